"""Charts drawn on the server as inline SVG geometry: no script, nothing fetched, prints as it shows."""
from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 560, 180, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


def bars(pairs: list[tuple[object, int]]) -> list[Bar]:
    """Vertical bars for (label, count) pairs, scaled to the tallest."""
    if not pairs:
        return []
    top = max(n for _, n in pairs) or 1
    slot = (WIDTH - 2 * PAD) / len(pairs)
    usable = HEIGHT - 2 * PAD
    return [Bar(x=PAD + i * slot + slot * 0.1, y=HEIGHT - PAD - usable * n / top, width=slot * 0.8,
                height=usable * n / top, label=str(label), value=n) for i, (label, n) in enumerate(pairs)]


def line(values: list[float], low: float, high: float) -> str:
    """SVG polyline points for values on a fixed scale (low..high), evenly spaced."""
    if not values:
        return ""
    span = (high - low) or 1
    step = (WIDTH - 2 * PAD) / max(1, len(values) - 1)
    usable = HEIGHT - 2 * PAD
    return " ".join(f"{PAD + i * step:.1f},{HEIGHT - PAD - usable * (v - low) / span:.1f}"
                    for i, v in enumerate(values))
