"""The reports' SVG charts as geometry (webui.charts): round steps up the y axis, every score along the bars'
x axis, days placed by the calendar, and x labels thinned so that none overlaps another."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from webui import charts
from webui.charts import Plot, bar_chart, line_chart, nice_step, nice_ticks, text_width, thinned


@pytest.mark.parametrize("span, most, step", [(10, 5, 2), (9, 6, 2), (4, 6, 1), (7, 6, 2), (100, 5, 20),
                                              (99, 6, 20), (1, 5, 0.2), (1234, 6, 500), (0, 5, 1)])
def test_a_nice_step_is_1_2_or_5_times_a_power_of_ten(span, most, step):
    assert nice_step(span, most) == pytest.approx(step)
    assert span / nice_step(span, most) <= max(most, 1) + 1e-9


@pytest.mark.parametrize("low, high, ticks", [(0, 10, [0, 2, 4, 6, 8, 10]), (1, 5, [1, 2, 3, 4, 5]),
                                              # the bottom of a 1..10 scale is marked: it is not 0
                                              (1, 10, [1, 2, 4, 6, 8, 10]), (0, 99, [0, 20, 40, 60, 80, 99])])
def test_the_scale_is_marked_at_round_values_and_its_ends(low, high, ticks):
    assert nice_ticks(low, high) == ticks


def test_every_score_of_the_scale_has_a_bar_and_a_label_and_counts_rise_in_whole_steps():
    chart = bar_chart([(3, 1), (5, 7), (10, 2)], (1, 10))
    assert [b.label for b in chart.bars] == [str(s) for s in range(1, 11)]
    assert [b.value for b in chart.bars] == [0, 0, 1, 0, 7, 0, 0, 0, 0, 2]
    assert [t.label for t in chart.x_ticks] == [str(s) for s in range(1, 11)]  # ten fit: every score
    assert [t.label for t in chart.y_ticks] == ["0", "2", "4", "6", "8"]  # up to a round 8 above the 7
    plot = chart.plot
    assert chart.y_ticks[0].at == plot.bottom and chart.y_ticks[-1].at == plot.top
    tallest = chart.bars[4]
    assert tallest.y == pytest.approx(plot.bottom - plot.height * 7 / 8, abs=0.1)
    assert tallest.height == pytest.approx(plot.height * 7 / 8, abs=0.1)
    assert chart.bars[0].height == 0
    assert all(plot.left <= b.x and b.x + b.width <= plot.right for b in chart.bars)
    assert all(b.value_shown for b in chart.bars)


def test_a_score_outside_todays_scale_still_has_its_bar():
    assert [b.label for b in bar_chart([(0, 4), (6, 1)], (1, 5)).bars] == ["0", "1", "2", "3", "4", "5", "6"]


def test_no_scores_at_all_still_draws_the_scale_from_0_to_1():
    chart = bar_chart([], (1, 5))
    assert [b.value for b in chart.bars] == [0] * 5 and [t.label for t in chart.y_ticks] == ["0", "1"]
    assert bar_chart([]).bars == []


def test_a_hundred_point_scale_thins_its_score_labels_and_hides_the_counts_above_narrow_bars():
    chart = bar_chart([(s, 1000 + s) for s in range(100)], (0, 99))
    assert len(chart.bars) == 100 and not any(b.value_shown for b in chart.bars)
    labels = [t.label for t in chart.x_ticks]
    assert labels[0] == "0" and labels[-1] == "99" and len(labels) < 40
    _no_overlap(chart.x_ticks)


def test_points_sit_on_the_scale_by_calendar_day():
    days = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 5)]
    chart = line_chart(days, [10, 1, 5.5], 1, 10, short=["01.11", "02.11", "05.11"],
                       full=["01.11.2026", "02.11.2026", "05.11.2026"])
    plot = chart.plot
    first, second, third = chart.points
    assert (first.y, second.y) == (plot.top, plot.bottom)  # 10 at the top of a 1..10 scale, 1 at its bottom
    assert third.y == pytest.approx(plot.bottom - plot.height / 2, abs=0.1)
    # four days between the first and the last: the second a quarter of the way along
    assert (second.x - first.x) == pytest.approx((third.x - first.x) / 4, abs=0.2)
    assert plot.left < first.x and third.x < plot.right
    assert [t.label for t in chart.x_ticks] == ["01.11", "02.11", "05.11"]
    assert [t.label for t in chart.y_ticks] == ["1", "2", "4", "6", "8", "10"]
    assert (first.label, first.value) == ("01.11.2026", 10)
    assert chart.polyline.split() == [f"{p.x:.1f},{p.y:.1f}" for p in chart.points]
    assert chart.radius == 4


def test_one_day_is_one_point_in_the_middle():
    chart = line_chart([date(2026, 11, 1)], [7], 1, 10, short=["01.11"], full=["01.11.2026"])
    assert chart.points[0].x == pytest.approx(chart.plot.left + chart.plot.width / 2, abs=0.1)
    assert [t.label for t in chart.x_ticks] == ["01.11"]


def test_three_months_of_days_get_labels_that_do_not_overlap_the_first_and_last_among_them():
    days = [date(2026, 9, 1) + timedelta(days=i) for i in range(90)]
    short = [d.strftime("%d.%m") for d in days]
    chart = line_chart(days, [5] * 90, 1, 10, short=short, full=short)
    labels = [t.label for t in chart.x_ticks]
    assert labels[0] == "01.09" and labels[-1] == short[-1] and 4 <= len(labels) <= 12
    _no_overlap(chart.x_ticks)
    assert len(chart.points) == 90 and chart.radius < 4  # every day keeps its point, smaller


def test_no_days_draw_no_points():
    assert line_chart([], [], 1, 10, short=[], full=[]).points == []


def test_thinning_keeps_the_last_label_in_place_of_one_it_would_overlap():
    assert thinned([0, 10, 20, 30], [8, 8, 8, 8], gap=4) == [0, 3]  # 20 would crowd 30: 30 is kept
    assert thinned([0, 10, 20, 30, 40], [8] * 5, gap=4) == [0, 2, 4]
    assert thinned([0, 10, 20, 30], [8, 8, 8, 8], gap=0) == [0, 1, 2, 3]
    assert thinned([0, 100, 105], [10, 10, 10], gap=2) == [0, 2]
    assert thinned([], []) == []


def test_the_text_stays_legible_on_a_phone():
    """The SVG shrinks to its card: about 350 px of a 390 px phone. Its text is still 10 px there."""
    assert charts.FONT * 350 / charts.WIDTH >= 10
    assert Plot().width > 0 and Plot().height > 8 * charts.FONT


def _no_overlap(ticks):
    for a, b in zip(ticks, ticks[1:]):
        assert a.at + text_width(a.label) / 2 <= b.at - text_width(b.label) / 2, (a, b)
