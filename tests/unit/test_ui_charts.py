"""The server-drawn charts of the web interface (api/ui/charts.py): one point or bar per value, the
scale kept, every figure said in words, text escaped."""

from __future__ import annotations

import re

import pytest

from api.ui.charts import BAD, OK, Bar, bar_list, column_chart, sparkline


def points_of(svg: str) -> list[tuple[float, float]]:
    found = re.search(r'<polyline points="([^"]+)"', svg)
    assert found
    return [(float(x), float(y)) for x, y in (p.split(",") for p in found.group(1).split())]


def test_a_sparkline_has_one_point_per_value_left_to_right_the_highest_value_on_top() -> None:
    svg = str(sparkline([1.0, 3.0, 2.0, 0.5], label="Duration <of> runs", width=100, height=40))
    points = points_of(svg)
    assert len(points) == 4
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    assert min(points, key=lambda p: p[1]) == points[1]  # 3.0: the highest, drawn nearest the top
    assert max(points, key=lambda p: p[1]) == points[3]  # 0.5: the lowest
    assert 'role="img" aria-label="Duration &lt;of&gt; runs"' in svg


@pytest.mark.parametrize("values", [[2.0], [5.0, 5.0, 5.0]])
def test_a_sparkline_of_equal_values_is_a_flat_line_inside_the_box(values: list[float]) -> None:
    points = points_of(str(sparkline(values, label="flat", width=100, height=40)))
    assert len(points) == len(values) and len({y for _, y in points}) == 1
    assert all(0 <= x <= 100 and 0 <= y <= 40 for x, y in points)


def test_nothing_to_draw_draws_nothing() -> None:
    assert str(sparkline([], label="x")) == ""
    assert str(column_chart([], label="x", top_label="100 %")) == ""
    assert str(bar_list([], label="x")) == ""


def test_columns_are_as_tall_as_their_share_and_titled_with_their_figures() -> None:
    bars = [Bar("2026-12-01", 1.0, OK, "all passed"), Bar("2026-12-02", 0.5, BAD, "half <failed>")]
    svg = str(column_chart(bars, label="Pass rate per day", top_label="100 %", height=128))
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', svg)]
    assert len(heights) == 2 and heights[1] == pytest.approx(heights[0] / 2)
    assert "<title>all passed</title>" in svg and "<title>half &lt;failed&gt;</title>" in svg
    assert ">2026-12-01</text>" in svg and ">2026-12-02</text>" in svg and ">100 %</text>" in svg


def test_horizontal_bars_are_as_long_as_their_share_each_with_its_label() -> None:
    bars = [Bar("passed", 1.0, OK, "8 passed"), Bar("failed", 0.25, BAD, "2 failed")]
    svg = str(bar_list(bars, label="8 passed, 2 failed"))
    widths = [float(w) for w in re.findall(r'<rect class="bar"[^>]* width="([\d.]+)"', svg)]
    assert widths[1] == pytest.approx(widths[0] / 4)
    assert ">passed</text>" in svg and "<title>2 failed</title>" in svg
