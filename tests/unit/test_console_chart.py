"""The account page's health chart (app/console/chart.py): geometry as tables, then the SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from app.console.chart import (
    Layout,
    Snapshot,
    build_chart,
    describe,
    health_chart_svg,
    month_ticks,
    render_svg,
    year_before,
)

TODAY = date(2026, 12, 6)
SVG = "{http://www.w3.org/2000/svg}"


def day(n: int) -> date:
    """``n`` days before TODAY."""
    return TODAY - timedelta(days=n)


def series(*items: tuple[int, int | None, str]) -> list[Snapshot]:
    return [Snapshot(day(n), score, band) for n, score, band in items]


@pytest.mark.parametrize(
    ("snapshots", "segments", "dots", "gaps"),
    [
        pytest.param([], [], [], [], id="none"),
        pytest.param(series((3, 80, "green")), [], [day(3)], [], id="one snapshot is a dot"),
        pytest.param(
            series((3, 80, "green"), (2, 81, "green"), (1, 82, "green")),
            [[day(3), day(2), day(1)]],
            [],
            [],
            id="consecutive days are one line",
        ),
        pytest.param(
            series((5, 80, "green"), (4, 80, "green"), (1, 70, "green"), (0, 71, "green")),
            [[day(5), day(4)], [day(1), day(0)]],
            [],
            [(day(3), day(2))],
            id="a missing day breaks the line",
        ),
        pytest.param(
            series((3, 80, "green"), (2, 30, "unknown"), (1, 82, "green")),
            [],
            [day(3), day(1)],
            [(day(2), day(2))],
            id="an unknown band is a gap, not a point",
        ),
        pytest.param(
            series((3, 80, "green"), (2, None, "green"), (1, 82, "green")),
            [],
            [day(3), day(1)],
            [(day(2), day(2))],
            id="no score is a gap, not zero",
        ),
        pytest.param(
            series((400, 10, "red"), (2, 80, "green"), (1, 81, "green"), (-1, 5, "red")),
            [[day(2), day(1)]],
            [],
            [],
            id="older than 12 months and future days are left out",
        ),
    ],
)
def test_segments_dots_and_gaps(
    snapshots: list[Snapshot],
    segments: list[list[date]],
    dots: list[date],
    gaps: list[tuple[date, date]],
) -> None:
    chart = build_chart(snapshots, TODAY)
    assert [[p.day for p in s] for s in chart.segments] == segments
    assert [p.day for p in chart.dots] == dots
    assert list(chart.gaps) == gaps


@pytest.mark.parametrize(
    ("snapshots", "changes", "segment_bands"),
    [
        pytest.param(
            series((3, 80, "green"), (2, 65, "yellow"), (1, 60, "yellow")),
            [(day(2), "green", "yellow", 65)],
            [("yellow", [3, 2, 1])],
            id="green to yellow: the stretch into yellow is yellow",
        ),
        pytest.param(
            series((4, 80, "green"), (3, 30, "unknown"), (2, 35, "red")),
            [(day(2), "green", "red", 35)],
            [],
            id="a change across an unknown day is still marked",
        ),
        pytest.param(
            # capped by false loyalty: 75 is yellow (domain.md 4.5), and it is the stored band
            series((2, 75, "green"), (1, 75, "yellow")),
            [(day(1), "green", "yellow", 75)],
            [("yellow", [2, 1])],
            id="a capped band is a change without a crossing",
        ),
        pytest.param(
            series((3, 45, "yellow"), (2, 50, "yellow"), (1, 41, "yellow")),
            [],
            [("yellow", [3, 2, 1])],
            id="no change",
        ),
    ],
)
def test_band_changes(
    snapshots: list[Snapshot],
    changes: list[tuple[date, str, str, int]],
    segment_bands: list[tuple[str, list[int]]],
) -> None:
    chart = build_chart(snapshots, TODAY)
    assert [(c.day, c.old, c.new, c.score) for c in chart.changes] == changes
    got = [(s[-1].band, [(TODAY - p.day).days for p in s]) for s in chart.segments]
    assert got == segment_bands


@pytest.mark.parametrize(
    ("score", "y"),
    [(100, 14.0), (0, 192.0), (50, 103.0), (70, 67.4), (40, 120.8), (130, 14.0), (-5, 192.0)],
)
def test_scores_map_to_the_plot_height(score: int, y: float) -> None:
    chart = build_chart([Snapshot(day(1), score, "green")], TODAY)
    assert chart.dots[0].y == y


def test_x_runs_from_a_year_ago_to_today() -> None:
    lay = Layout()
    chart = build_chart(series((365, 50, "yellow"), (0, 50, "yellow")), TODAY, layout=lay)
    assert [p.x for p in chart.dots] == [lay.left, lay.left + lay.plot_width]


@pytest.mark.parametrize(
    ("today", "start"),
    [(date(2026, 12, 6), date(2025, 12, 6)), (date(2028, 2, 29), date(2027, 2, 28))],
)
def test_year_before(today: date, start: date) -> None:
    assert year_before(today) == start


@pytest.mark.parametrize(
    ("start", "end", "labels"),
    [
        (
            date(2025, 12, 6),
            date(2026, 12, 6),
            [
                "Jan 2026",
                "Feb",
                "Mar",
                "Apr",
                "May",
                "Jun",
                "Jul",
                "Aug",
                "Sep",
                "Oct",
                "Nov",
                "Dec",
            ],
        ),
        (date(2025, 3, 1), date(2025, 5, 31), ["Mar 2025", "Apr", "May"]),
        (date(2025, 11, 15), date(2026, 2, 1), ["Dec 2025", "Jan 2026", "Feb"]),
    ],
)
def test_month_ticks(start: date, end: date, labels: list[str]) -> None:
    ticks = month_ticks(start, end, Layout())
    assert [t.label for t in ticks] == labels
    assert [t.x for t in ticks] == sorted(t.x for t in ticks)


def test_the_last_snapshot_of_a_day_wins() -> None:
    chart = build_chart([Snapshot(day(1), 20, "red"), Snapshot(day(1), 90, "green")], TODAY)
    assert [(p.score, p.band) for p in chart.dots] == [(90, "green")]


@pytest.mark.parametrize(
    ("snapshots", "text"),
    [
        ([], "No health score between 2025-12-06 and 2026-12-06."),
        (
            series((3, 80, "green"), (2, 65, "yellow"), (0, 60, "yellow")),
            "3 daily scores between 2025-12-06 and 2026-12-06; latest 60 (yellow) on "
            "2026-12-06. Band changes: 2026-12-04 green to yellow. 1 gaps without a score "
            "(1 days).",
        ),
    ],
)
def test_describe(snapshots: list[Snapshot], text: str) -> None:
    assert describe(build_chart(snapshots, TODAY)) == text


def _tree(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def test_svg_has_title_axes_lines_and_change_marks() -> None:
    snaps = [
        Snapshot(day(n), 80 if n > 100 else 55, "green" if n > 100 else "yellow")
        for n in range(200, -1, -1)
        if n != 50
    ]
    root = _tree(health_chart_svg(snaps, TODAY, title="Health of Acme <Corp>", id_prefix="c1"))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").text == "Health of Acme <Corp>"
    assert "Band changes: 2026-08-28 green to yellow" in root.find(f"{SVG}desc").text
    y_labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "y-label"]
    assert y_labels == ["0", "40", "70", "100"]
    x_labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "x-label"]
    assert x_labels[0] == "Jan 2026"
    assert len(x_labels) == 12
    lines = list(root.iter(f"{SVG}polyline"))
    # green stretch, the yellow stretch up to the missing day, the yellow stretch after it
    assert [p.get("class") for p in lines] == [
        "score score-green",
        "score score-yellow",
        "score score-yellow",
    ]
    changes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "band-change"]
    assert len(changes) == 1
    assert changes[0].find(f"{SVG}title").text == "2026-08-28: green \u2192 yellow, score 55"


def test_svg_never_draws_a_gap_at_zero() -> None:
    snaps = series((3, 80, "green"), (2, 0, "unknown"), (1, None, "green"), (0, 82, "green"))
    chart = build_chart(snaps, TODAY)
    root = _tree(render_svg(chart, title="t"))
    bottom = str(chart.layout.top + chart.layout.plot_height)
    ys = [c.get("cy") for c in root.iter(f"{SVG}circle")]
    ys += [pt.split(",")[1] for p in root.iter(f"{SVG}polyline") for pt in p.get("points").split()]
    assert ys
    assert bottom + ".0" not in ys
    assert bottom not in ys


def test_empty_chart_says_so() -> None:
    root = _tree(health_chart_svg([], TODAY, title="t"))
    empty = [t for t in root.iter(f"{SVG}text") if t.get("class") == "empty"]
    assert empty[0].text == "No health score in the last 12 months"
    assert not list(root.iter(f"{SVG}polyline"))


def test_a_lone_day_before_a_change_keeps_its_colour() -> None:
    chart = build_chart(series((3, 80, "green"), (2, 65, "yellow"), (1, 60, "yellow")), TODAY)
    assert [(p.day, p.band) for p in chart.dots] == [(day(3), "green")]
