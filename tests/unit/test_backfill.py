"""Backfill planning (app/sync/backfill.py): which objects a rerun reads, and from where."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.sync.backfill import (
    BackfillConflictError,
    Generation,
    Step,
    completed_state,
    generation_for,
    open_generation,
    page_state,
    pending_state,
    plan_backfill,
    read_position,
    start_position,
)
from app.sync.cursor import CursorState

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T + timedelta(days=2)
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
G = Generation(T, None)  # the backfill a previous command began
G_SINCE = Generation(T, SINCE)
OLD = Generation(T - timedelta(days=30), None)
OBJECTS = ("Account", "Opportunity", "Note")

page = CursorState(T - timedelta(hours=1), "006A", {"locator": "MjAw"})


def done(g: Generation) -> CursorState:
    return completed_state(g, CursorState(T - timedelta(hours=2), "001Z"), T + timedelta(hours=1))


def legacy_in_progress() -> CursorState:
    """A state written before generations existed, killed mid-stream."""
    return CursorState(page.at, page.id, dict(page.resume), in_progress=True)


def steps(stored: dict[str, CursorState], **kwargs: object) -> list[tuple[str, Step, object]]:
    options: dict[str, object] = {"since": None, "restart": False, "now": NOW, **kwargs}
    plan = plan_backfill(stored, OBJECTS, **options)  # type: ignore[arg-type]
    return [(s.object_name, s.step, s.start) for s in plan.steps]


START_ALL = [(o, Step.START, None) for o in OBJECTS]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        pytest.param({}, START_ALL, id="never backfilled: everything starts"),
        pytest.param(
            {"Account": done(G), "Opportunity": page_state(G, page), "Note": pending_state(G)},
            [
                ("Account", Step.DONE, None),
                ("Opportunity", Step.RESUME, page),
                ("Note", Step.START, None),
            ],
            id="killed in opportunities: accounts stay done, opportunities resume",
        ),
        pytest.param(
            {"Account": done(G), "Opportunity": pending_state(G), "Note": pending_state(G)},
            [
                ("Account", Step.DONE, None),
                ("Opportunity", Step.START, None),
                ("Note", Step.START, None),
            ],
            id="killed between two objects",
        ),
        pytest.param(
            {o: done(G) for o in OBJECTS}, START_ALL, id="completed: a rerun begins a new one"
        ),
        pytest.param(
            {"Account": done(G), "Opportunity": page_state(OLD, page), "Note": done(OLD)},
            START_ALL,
            id="a newer complete backfill supersedes an older unfinished one",
        ),
        pytest.param(
            {"Account": page_state(G, page), "Opportunity": done(OLD)},
            [
                ("Account", Step.RESUME, page),
                ("Opportunity", Step.START, None),
                ("Note", Step.START, None),
            ],
            id="objects outside the interrupted command join it",
        ),
        pytest.param(
            {"Account": done(OLD), "Opportunity": legacy_in_progress()},
            [
                ("Account", Step.START, None),
                ("Opportunity", Step.RESUME, page),
                ("Note", Step.START, None),
            ],
            id="a state from before generations still resumes its page",
        ),
        pytest.param(
            {"Account": done(G), "Opportunity": page_state(G, page), "Note": done(OLD)},
            [
                ("Account", Step.DONE, None),
                ("Opportunity", Step.RESUME, page),
                ("Note", Step.START, None),
            ],
            id="only the newest backfill counts",
        ),
    ],
)
def test_plan_continues_the_open_backfill(
    stored: dict[str, CursorState], expected: list[tuple[str, Step, object]]
) -> None:
    assert steps(stored) == expected


def test_restart_begins_a_new_backfill_from_since() -> None:
    stored = {"Account": done(G), "Opportunity": page_state(G, page)}
    plan = plan_backfill(stored, OBJECTS, since=SINCE, restart=True, now=NOW)
    assert plan.generation == Generation(NOW, SINCE)
    assert not plan.continued
    assert [(s.step, s.start) for s in plan.steps] == [(Step.START, CursorState(at=SINCE))] * 3
    assert plan.to_start == OBJECTS


def test_continued_plan_keeps_the_generation_and_its_since() -> None:
    stored = {"Account": done(G_SINCE), "Opportunity": pending_state(G_SINCE)}
    plan = plan_backfill(stored, OBJECTS, since=SINCE, restart=False, now=NOW)
    assert plan.continued
    assert plan.generation == G_SINCE
    assert plan.step_for("Opportunity").start == CursorState(at=SINCE)
    assert plan.step_for("Account").completed_at == T + timedelta(hours=1)
    assert plan.to_start == ("Opportunity", "Note")


@pytest.mark.parametrize(
    ("open_since", "asked"),
    [(None, SINCE), (SINCE, None), (SINCE, SINCE + timedelta(days=1))],
)
def test_another_since_than_the_open_backfill_is_refused(
    open_since: datetime | None, asked: datetime | None
) -> None:
    g = Generation(T, open_since)
    stored = {"Account": done(g), "Opportunity": page_state(g, page)}
    with pytest.raises(BackfillConflictError, match="--restart"):
        plan_backfill(stored, OBJECTS, since=asked, restart=False, now=NOW)
    # ... unless asked for a new one, or the open one is complete
    assert not plan_backfill(stored, OBJECTS, since=asked, restart=True, now=NOW).continued
    complete = {o: done(g) for o in OBJECTS}
    assert not plan_backfill(complete, OBJECTS, since=asked, restart=False, now=NOW).continued


def test_an_object_outside_the_command_keeps_the_backfill_open() -> None:
    stored = {"Account": done(G), "Opportunity": done(G), "Note": pending_state(G)}
    assert open_generation(stored) == G
    plan = plan_backfill(stored, ("Account",), since=None, restart=False, now=NOW)
    assert [s.step for s in plan.steps] == [Step.DONE]


def test_states_round_trip_and_read_position_ignores_since() -> None:
    assert start_position(page_state(G_SINCE, page), G_SINCE) == (Step.RESUME, page)
    assert start_position(pending_state(G_SINCE), G_SINCE) == (Step.START, CursorState(at=SINCE))
    assert read_position(pending_state(G_SINCE), G_SINCE) is None  # nothing read: no promotion
    assert read_position(page_state(G_SINCE, page), G_SINCE) == CursorState(page.at, page.id)
    assert read_position(page_state(OLD, page), G_SINCE) is None  # another backfill's page
    finished = completed_state(G, None, NOW)
    assert (finished.at, finished.in_progress, finished.completed_at) == (None, False, NOW)


def test_a_direct_pass_continues_its_own_open_backfill_or_begins_one() -> None:
    assert generation_for(page_state(G, page), SINCE, NOW) == G
    assert generation_for(done(G), SINCE, NOW) == Generation(NOW, SINCE)
    assert generation_for(CursorState(), None, NOW) == Generation(NOW, None)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_backfill({}, OBJECTS, since=None, restart=False, now=datetime(2026, 1, 1))
