"""How the console names an operator, everywhere one appears: "Name (extension)" when the operator directory
or a console account linked to the extension gives a name, else the extension alone."""
from __future__ import annotations

from flask import g

from connector.inbound.directory import operator_names
from webui.common import bp, services


def _names() -> dict[str, str]:
    """The names, read once per request (two small tables), when a page first shows an operator."""
    if "operator_names" not in g:
        with services().db.reading() as s:
            g.operator_names = operator_names(s)
    return g.operator_names


@bp.app_template_filter("operator")
def operator(extension) -> str:
    """`{{ call.operator | operator }}`: "Ирина Петрова (101)", "101", or "—" for no operator."""
    if extension is None or extension == "":
        return "—"
    extension = str(extension)
    name = _names().get(extension)
    return f"{name} ({extension})" if name else extension
