"""Charts drawn on the server as inline SVG geometry: no script, nothing fetched, prints as it shows.

Pure functions from figures to positions in the SVG's viewBox (WIDTH x HEIGHT); the templates only draw what
these return. The SVG shrinks with its card (max-width: 100%), to about 350 px on a 390 px phone, so the
viewBox is narrow and text is FONT viewBox units (about 10 px there), and labels along the x axis are thinned
until they cannot overlap."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT = 480, 250
FONT = 14  # viewBox units
CHAR = FONT * 0.62  # a digit's or a letter's width, about, in the console's sans-serif
# Room around the plot: the y axis' title and numbers on the left, the x axis' labels and title below.
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 20, 52
Y_TICKS = 6  # at most this many numbers up the y axis


@dataclass(frozen=True)
class Plot:
    """The plotting area: the axes are its left and bottom edges."""
    left: float = LEFT
    top: float = TOP
    right: float = WIDTH - RIGHT
    bottom: float = HEIGHT - BOTTOM

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    def y(self, value: float, low: float, high: float) -> float:
        """Where `value` of the scale low..high is drawn (SVG's y grows downwards)."""
        return self.bottom - self.height * (value - low) / ((high - low) or 1)


@dataclass(frozen=True)
class Tick:
    """A labelled mark on an axis: `at` is its x (x axis) or y (y axis) in viewBox units."""
    at: float
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    value_shown: bool  # the count above the bar, where the bars are wide enough for it


@dataclass(frozen=True)
class BarChart:
    plot: Plot
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # the day, as the page writes it
    value: float


@dataclass(frozen=True)
class LineChart:
    plot: Plot
    points: list[Point]
    y_ticks: list[Tick]
    x_ticks: list[Tick]

    @property
    def radius(self) -> float:
        """A point's size: smaller when a month or more of them would run into one another."""
        return 4 if len(self.points) <= 31 else 2.5

    @property
    def polyline(self) -> str:
        """The points as SVG's polyline wants them."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def nice_step(span: float, most: int) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten that cuts `span` into at most `most` parts."""
    if span <= 0 or most < 1:
        return 1.0
    rough = span / most
    power = 10 ** math.floor(math.log10(rough))
    for factor in (1, 2, 5, 10):
        if factor * power >= rough - 1e-9:
            return factor * power
    return 10 * power  # not reached: 10 always qualifies


def _r(value: float) -> float:
    """A position to a tenth of a viewBox unit: finer draws nothing different and only lengthens the page."""
    return round(value, 1)


def _number(value: float) -> str:
    return f"{value:g}"


def nice_ticks(low: float, high: float, most: int = Y_TICKS) -> list[float]:
    """Round values from low to high for an axis, about `most` + 1 of them. An end of the range that is not a
    round value is added when it is at least half a step from its neighbour: a 1..10 scale reads 1, 2, 4, 6,
    8, 10, so nobody takes its bottom for 0."""
    step = nice_step(high - low, most)
    first = math.ceil(low / step - 1e-9) * step
    values = []
    v = first
    while v <= high + 1e-9:
        values.append(round(v, 10))
        v += step
    if not values or values[0] - low >= step / 2:
        values.insert(0, low)
    if high - values[-1] >= step / 2:
        values.append(high)
    return values


def thinned(positions: list[float], widths: list[float], gap: float = 8) -> list[int]:
    """Which of the labels centred at `positions` (ascending) to show so that none overlaps another: from the
    first on, each that clears the last shown; the last label is always shown, in place of a shown one it
    would overlap."""
    shown: list[int] = []
    for i, (x, w) in enumerate(zip(positions, widths)):
        if not shown or x - w / 2 >= positions[shown[-1]] + widths[shown[-1]] / 2 + gap:
            shown.append(i)
    last = len(positions) - 1
    if shown and shown[-1] != last:
        while shown and positions[last] - widths[last] / 2 < positions[shown[-1]] + widths[shown[-1]] / 2 + gap:
            shown.pop()
        shown.append(last)
    return shown


def text_width(label: str) -> float:
    return len(label) * CHAR


def bar_chart(pairs: list[tuple[int, int]], scale: tuple[int, int] | None = None, plot: Plot = Plot()) -> BarChart:
    """Vertical bars for (score, count) pairs: one slot for every score of `scale` (low..high), with or
    without calls, and for any score outside it that has calls (given before the scale changed); the y axis
    counts calls from 0 up to a round number at or above the largest count."""
    counts = dict(pairs)
    scores = set(counts)
    if scale is not None:
        scores |= set(range(scale[0], scale[1] + 1))
    if not scores:
        return BarChart(plot, [], [], [])
    scores_sorted = sorted(scores)
    most = max(1, max(counts.values(), default=0))
    step = max(1, int(nice_step(most, Y_TICKS)))  # calls come whole
    top = math.ceil(most / step) * step
    y_values = list(range(0, top + 1, step))
    slot = plot.width / len(scores_sorted)
    value_fits = slot * 0.9 >= text_width(str(max(counts.values(), default=0)))
    bars = []
    for i, score in enumerate(scores_sorted):
        n = counts.get(score, 0)
        y = plot.y(n, 0, top)
        bars.append(Bar(x=_r(plot.left + i * slot + slot * 0.15), y=_r(y), width=_r(slot * 0.7),
                        height=_r(plot.bottom - y),
                        label=str(score), value=n, value_shown=value_fits))
    centres = [b.x + b.width / 2 for b in bars]
    shown = thinned(centres, [text_width(b.label) for b in bars], gap=4)
    return BarChart(plot, bars, [Tick(_r(plot.y(v, 0, top)), _number(v)) for v in y_values],
                    [Tick(_r(centres[i]), bars[i].label) for i in shown])


def line_chart(days: list[date], values: list[float], low: float, high: float, *, short: list[str],
               full: list[str], plot: Plot = Plot()) -> LineChart:
    """A point a day on the scale low..high, placed by the calendar (a day without scores leaves a gap in the
    spacing, not a missing tick), joined by a line; `short` labels the x axis (thinned so none overlap),
    `full` names each point. One day sits in the middle."""
    if not days:
        return LineChart(plot, [], [], [])
    first, last = days[0], days[-1]
    span = (last - first).days
    inner = 12  # the first and last points clear the y axis and the right edge

    def x(day: date) -> float:
        if span == 0:
            return plot.left + plot.width / 2
        return plot.left + inner + (plot.width - 2 * inner) * (day - first).days / span

    points = [Point(_r(x(d)), _r(plot.y(v, low, high)), label, v) for d, v, label in zip(days, values, full)]
    shown = thinned([p.x for p in points], [text_width(s) for s in short])
    return LineChart(plot, points, [Tick(_r(plot.y(v, low, high)), _number(v)) for v in nice_ticks(low, high)],
                     [Tick(points[i].x, short[i]) for i in shown])
