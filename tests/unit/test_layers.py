"""The packages keep their order: console → inbound → delivery → core, with the registry and the wiring above
them and the faces (web, webui, commands) above everything. A module may import its own package and the ones
below it, never one above; the domain never imports Flask.

Read from each module's own `import` and `from … import` statements (function-level ones too), so a lazy import
cannot hide an arrow that runs back up.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Lower number: lower in the house. A module may import only packages of its own rank or lower.
RANKS = {"connector.core": 0, "connector.delivery": 1, "connector.inbound": 2, "connector.console": 3,
         "connector.registry": 4, "connector.wiring": 5}
FACES = ("web", "webui", "commands", "app")


def rank(module: str) -> int | None:
    for prefix, value in sorted(RANKS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return value
    return None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from connector import registry`
    return found


def domain_modules() -> dict[str, Path]:
    modules = {}
    for path in (ROOT / "connector").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def test_no_arrow_runs_back_up():
    upward = sorted((name, target) for name, path in domain_modules().items() if rank(name) is not None
                    for target in imports(path) if (r := rank(target)) is not None and r > rank(name))
    assert upward == [], "a module imports a package above its own (console → inbound → delivery → core)"


def test_the_domain_never_imports_a_face_or_flask():
    faces = sorted((name, target) for name, path in domain_modules().items() for target in imports(path)
                   if target.split(".")[0] in FACES + ("flask", "flask_babel", "flask_wtf"))
    assert faces == []


def test_the_check_sees_an_arrow_back_up(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from connector.console import reports\n")
    assert {t for t in imports(module) if (r := rank(t)) is not None and r > rank("connector.core.x")} == \
        {"connector.console", "connector.console.reports"}
