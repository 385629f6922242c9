"""The account page's chart: the health score over the last 12 months as a server-rendered SVG.

Pure (no I/O, no clock: ``today`` is an argument), so the console needs no chart library and no
JavaScript, and the geometry is table-tested (tests/unit/test_console_chart.py).

What it draws, and why:

* One point per ``health_snapshots`` row (domain.md 4.6: one per account and day). Points on
  consecutive days are joined; a day without a snapshot, or a snapshot whose band is ``unknown``
  (coverage under 50, 4.4: the score says more about missing feeds than about the customer),
  breaks the line. A gap is left empty, never drawn as 0: a 0 would read as a red account.
  A point with no neighbour is drawn as a dot, so a lone snapshot is still seen.
* The line is coloured by band (green >= 70, yellow 40-69, red < 40, 4.5), over faint band
  zones; the 40 and 70 lines are labelled.
* A band change (the band differs from the last known band before it) is marked by a dashed
  vertical line and a dot, with a ``<title>`` tooltip ("2026-03-04: green -> yellow, score 65").
  Bands can be capped (false loyalty, dormant) so a change is not always a crossing of 40 / 70:
  the stored band is what counts, as it is what the CRM and the playbooks saw.
* Accessible: ``role="img"`` with a ``<title>`` and a ``<desc>`` summing up the series (first
  and last day, latest score, band changes, gaps) for screen readers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

BANDS = ("green", "yellow", "red")
BAND_COLOURS = {"green": "#1a7f37", "yellow": "#b58a00", "red": "#c62828", "unknown": "#6e7781"}
ZONE_COLOURS = {"green": "#e6f4ea", "yellow": "#fff8e1", "red": "#fdecea"}
#: Band limits of domain.md 4.5, for the zones and the labelled grid lines.
YELLOW_FROM = 40
GREEN_FROM = 70
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Snapshot:
    """One stored daily result: the day, the score (None when not computed) and the band."""

    day: date
    score: int | None
    band: str


@dataclass(frozen=True)
class Point:
    day: date
    score: int
    band: str
    x: float
    y: float


@dataclass(frozen=True)
class BandChange:
    day: date
    old: str
    new: str
    score: int
    x: float
    y: float


@dataclass(frozen=True)
class Tick:
    label: str
    x: float


@dataclass(frozen=True)
class Layout:
    """Sizes in SVG user units; the SVG scales to its container (``viewBox``)."""

    width: int = 720
    height: int = 220
    left: int = 36
    right: int = 12
    top: int = 14
    bottom: int = 28

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


@dataclass(frozen=True)
class Chart:
    """The chart's geometry: what :func:`render_svg` draws."""

    start: date
    end: date
    layout: Layout
    #: Runs of points to join with a line, each of one band (a band change starts a new run,
    #: joined to the previous one's last point so the line stays continuous across it).
    segments: tuple[tuple[Point, ...], ...]
    #: Points with no neighbour, or the lone day of a band before a change: drawn as dots.
    dots: tuple[Point, ...]
    changes: tuple[BandChange, ...]
    #: Spans with no usable snapshot between two that have one (first missing day, last).
    gaps: tuple[tuple[date, date], ...]
    ticks: tuple[Tick, ...]
    points: int
    latest: Point | None


def year_before(day: date) -> date:
    """The same day a year earlier (29 February -> 28 February)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def _x(day: date, start: date, end: date, layout: Layout) -> float:
    span = max((end - start).days, 1)
    return round(layout.left + (day - start).days / span * layout.plot_width, 1)


def _y(score: float, layout: Layout) -> float:
    clamped = min(max(score, 0), 100)
    return round(layout.top + (100 - clamped) / 100 * layout.plot_height, 1)


def month_ticks(start: date, end: date, layout: Layout) -> tuple[Tick, ...]:
    """A tick on the first day of each month in ``[start, end]``; the year on January and on
    the first tick, so the reader knows which year each month is in."""
    ticks: list[Tick] = []
    year, month = start.year, start.month
    if start.day != 1:
        month += 1
        if month > 12:
            year, month = year + 1, 1
    while (first := date(year, month, 1)) <= end:
        label = MONTHS[month - 1]
        if month == 1 or not ticks:
            label += f" {year}"
        ticks.append(Tick(label, _x(first, start, end, layout)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(ticks)


def build_chart(
    snapshots: Iterable[Snapshot],
    today: date,
    *,
    layout: Layout | None = None,
    max_gap_days: int = 1,
) -> Chart:
    """The chart of the snapshots dated in the 12 months up to ``today`` (older and future ones
    are left out; several on one day: the last given wins). ``max_gap_days``: points further
    apart than this are not joined (1: snapshots are daily, a missing day is a gap)."""
    layout = layout or Layout()
    start, end = year_before(today), today
    by_day: dict[date, Snapshot] = {}
    for s in snapshots:
        if start <= s.day <= end:
            by_day[s.day] = s
    ordered = [by_day[d] for d in sorted(by_day)]

    runs: list[list[Point]] = []  # joined runs, before splitting by band
    gaps: list[tuple[date, date]] = []
    changes: list[BandChange] = []
    last_known: Point | None = None
    previous_day: date | None = None
    for s in ordered:
        usable = s.score is not None and s.band in BANDS
        if not usable:
            continue
        assert s.score is not None
        point = Point(s.day, s.score, s.band, _x(s.day, start, end, layout), _y(s.score, layout))
        if last_known is not None and last_known.band != point.band:
            changes.append(BandChange(s.day, last_known.band, s.band, s.score, point.x, point.y))
        if previous_day is not None and (s.day - previous_day).days <= max_gap_days:
            runs[-1].append(point)
        else:
            if previous_day is not None:
                gaps.append((previous_day + timedelta(days=1), s.day - timedelta(days=1)))
            runs.append([point])
        last_known = point
        previous_day = s.day

    segments: list[tuple[Point, ...]] = []
    dots: list[Point] = []
    for run in runs:
        if len(run) == 1:
            dots.append(run[0])
            continue
        current: list[Point] = [run[0]]
        for point in run[1:]:
            if point.band != current[-1].band:
                # the stretch into a changed band is drawn in the new band's colour
                if len(current) > 1:
                    segments.append(tuple(current))
                else:  # a lone day of the old band: its dot keeps its colour
                    dots.append(current[0])
                current = [current[-1]]
            current.append(point)
        segments.append(tuple(current))
    return Chart(
        start=start,
        end=end,
        layout=layout,
        segments=tuple(segments),
        dots=tuple(dots),
        changes=tuple(changes),
        gaps=tuple(gaps),
        ticks=month_ticks(start, end, layout),
        points=sum(len(r) for r in runs),
        latest=last_known,
    )


def describe(chart: Chart) -> str:
    """The chart in words (the SVG's ``<desc>``, and the text without SVG)."""
    if chart.latest is None:
        return f"No health score between {chart.start} and {chart.end}."
    parts = [
        f"{chart.points} daily scores between {chart.start} and {chart.end}; "
        f"latest {chart.latest.score} ({chart.latest.band}) on {chart.latest.day}."
    ]
    if chart.changes:
        listed = ", ".join(f"{c.day} {c.old} to {c.new}" for c in chart.changes[-5:])
        more = f" (last 5 of {len(chart.changes)})" if len(chart.changes) > 5 else ""
        parts.append(f"Band changes{more}: {listed}.")
    else:
        parts.append("No band change.")
    if chart.gaps:
        days = sum((b - a).days + 1 for a, b in chart.gaps)
        parts.append(f"{len(chart.gaps)} gaps without a score ({days} days).")
    return " ".join(parts)


def _polyline(points: Sequence[Point]) -> str:
    return " ".join(f"{p.x},{p.y}" for p in points)


def render_svg(chart: Chart, *, title: str, id_prefix: str = "health-chart") -> str:
    """The chart as an inline ``<svg>`` element (safe to embed: every text is escaped)."""
    lay = chart.layout
    t_id, d_id = f"{id_prefix}-title", f"{id_prefix}-desc"
    right = lay.left + lay.plot_width
    bottom = lay.top + lay.plot_height
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="health-chart" role="img" '
        f'viewBox="0 0 {lay.width} {lay.height}" preserveAspectRatio="xMidYMid meet" '
        f'aria-labelledby="{t_id} {d_id}">',
        f'<title id="{t_id}">{escape(title)}</title>',
        f'<desc id="{d_id}">{escape(describe(chart))}</desc>',
    ]
    # band zones, then the labelled grid
    zones = (
        ("green", 100, GREEN_FROM),
        ("yellow", GREEN_FROM, YELLOW_FROM),
        ("red", YELLOW_FROM, 0),
    )
    for band, high, low in zones:
        y1, y2 = _y(high, lay), _y(low, lay)
        out.append(
            f'<rect class="zone zone-{band}" x="{lay.left}" y="{y1}" width="{lay.plot_width}" '
            f'height="{round(y2 - y1, 1)}" fill="{ZONE_COLOURS[band]}"/>'
        )
    for value in (0, YELLOW_FROM, GREEN_FROM, 100):
        y = _y(value, lay)
        out.append(
            f'<line class="grid" x1="{lay.left}" y1="{y}" x2="{right}" y2="{y}" '
            f'stroke="#d0d7de" stroke-width="1"/>'
        )
        out.append(
            f'<text class="y-label" x="{lay.left - 4}" y="{y + 4}" text-anchor="end" '
            f'font-size="11" fill="#57606a">{value}</text>'
        )
    for tick in chart.ticks:
        out.append(
            f'<line class="x-tick" x1="{tick.x}" y1="{bottom}" x2="{tick.x}" y2="{bottom + 4}" '
            f'stroke="#8c959f"/>'
        )
        out.append(
            f'<text class="x-label" x="{tick.x}" y="{bottom + 16}" text-anchor="middle" '
            f'font-size="11" fill="#57606a">{escape(tick.label)}</text>'
        )
    out.append(
        f'<line class="axis" x1="{lay.left}" y1="{bottom}" x2="{right}" y2="{bottom}" '
        f'stroke="#8c959f"/>'
    )
    for segment in chart.segments:
        band = segment[-1].band
        out.append(
            f'<polyline class="score score-{band}" fill="none" stroke="{BAND_COLOURS[band]}" '
            f'stroke-width="2" stroke-linejoin="round" points="{_polyline(segment)}"/>'
        )
    for dot in chart.dots:
        out.append(
            f'<circle class="point point-{dot.band}" cx="{dot.x}" cy="{dot.y}" r="2.5" '
            f'fill="{BAND_COLOURS[dot.band]}"><title>{dot.day}: {dot.score} ({dot.band})'
            f"</title></circle>"
        )
    for change in chart.changes:
        out.append(
            f'<g class="band-change"><line x1="{change.x}" y1="{lay.top}" x2="{change.x}" '
            f'y2="{bottom}" stroke="{BAND_COLOURS[change.new]}" stroke-dasharray="3 3"/>'
            f'<circle cx="{change.x}" cy="{change.y}" r="4" fill="#fff" '
            f'stroke="{BAND_COLOURS[change.new]}" stroke-width="2"/>'
            f"<title>{change.day}: {change.old} \u2192 {change.new}, score {change.score}</title>"
            "</g>"
        )
    if chart.latest is None:
        out.append(
            f'<text class="empty" x="{lay.left + lay.plot_width / 2}" '
            f'y="{lay.top + lay.plot_height / 2}" text-anchor="middle" font-size="13" '
            f'fill="#57606a">No health score in the last 12 months</text>'
        )
    out.append("</svg>")
    return "".join(out)


def health_chart_svg(
    snapshots: Iterable[Snapshot], today: date, *, title: str, id_prefix: str = "health-chart"
) -> str:
    """:func:`build_chart` then :func:`render_svg`: what the account page embeds."""
    return render_svg(build_chart(snapshots, today), title=title, id_prefix=id_prefix)
