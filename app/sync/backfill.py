"""Backfill generations: which objects a ``sync backfill`` runs, and from where. Pure.

A backfill of a CRM is one unit of work over its objects (accounts, then opportunities, then
notes) that is either **open** or **complete**. Each run of the command is a pass of one
*generation*; a killed pass is continued by the next one instead of starting over:

* objects the generation already finished are not read again (``already_complete``),
* the object it was in resumes at its last committed page (``resume``),
* the others start from the generation's ``--since`` (``start``).

Rules (``docs/adr/0001-cursor-and-page-commit.md`` says why):

1. The generation that counts is the **newest** one recorded on any object of the CRM. It is
   open while one of the objects carrying it has not completed it.
2. Open: the command continues it. An object requested now that the generation did not
   include joins it (from its ``since``). A different ``--since`` is refused
   (:class:`BackfillConflictError`), so two date ranges never mix in one backfill.
3. Complete (or none yet): the command starts a new generation, as does ``--restart``
   (which drops an open one).

Nothing here reads a clock or a database: the engine passes the stored ``backfill`` cursors
(:class:`~app.sync.cursor.CursorState`) and ``now``, and stores the states built here. Each
object's ``backfill`` cursor carries its part of the generation (``generation``, ``since``,
``in_progress``, ``completed_at``; the JSON is in :mod:`app.sync.cursor`): pending or between
pages it is ``in_progress`` with the adapter's ``resume`` token; finished, it has
``completed_at``.

The engine writes the pending state of every object to start when it plans (so an object not
yet reached still counts as open), then one state per committed page, then the completed one.
A state without ``generation`` (written before generations existed) belongs to none; if it is
``in_progress`` its object still resumes at its stored page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from app.errors import ConfigError
from app.sync.cursor import CursorState


class BackfillConflictError(ConfigError):
    """The command asks for a different backfill than the open one (another ``--since``)."""


@dataclass(frozen=True)
class Generation:
    """One backfill of a CRM: when it began (its identity) and the ``--since`` it reads from."""

    started_at: datetime
    since: datetime | None

    @property
    def key(self) -> str:
        return _iso(self.started_at)

    def as_dict(self) -> dict[str, Any]:
        return {"generation": self.key, "since": _iso(self.since) if self.since else None}

    def stamp(self, state: CursorState) -> CursorState:
        """``state`` as part of this generation."""
        return replace(state, generation=self.started_at, since=self.since)


class Step(StrEnum):
    """What a pass does with one object of the generation."""

    START = "start"  # read from the generation's since (or everything)
    RESUME = "resume"  # continue at the last committed page
    DONE = "already_complete"  # finished in this generation: not read again


@dataclass(frozen=True)
class ObjectStep:
    object_name: str
    step: Step
    start: CursorState | None  # where reading begins (None: everything); None for DONE
    completed_at: datetime | None = None


@dataclass(frozen=True)
class BackfillPlan:
    generation: Generation
    steps: tuple[ObjectStep, ...]
    continued: bool  # an open generation is continued (False: a new one begins)

    def step_for(self, object_name: str) -> ObjectStep:
        for step in self.steps:
            if step.object_name == object_name:
                return step
        raise KeyError(object_name)

    @property
    def to_start(self) -> tuple[str, ...]:
        """Objects whose pending state must be stored before the pass (they join the unit)."""
        return tuple(s.object_name for s in self.steps if s.step is Step.START)


def _iso(value: datetime) -> str:
    return _aware(value).astimezone(UTC).isoformat()


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"backfill times must be timezone-aware (UTC), got {value.isoformat()}")
    return value


def read_generation(state: CursorState) -> Generation | None:
    """The generation a stored ``backfill`` state belongs to (None: none recorded)."""
    if state.generation is None:
        return None
    return Generation(state.generation, state.since)


def belongs_to(stored: CursorState, generation: Generation) -> bool:
    found = read_generation(stored)
    return found is not None and found.key == generation.key


def is_complete(stored: CursorState, generation: Generation) -> bool:
    """Whether the object finished ``generation``."""
    return belongs_to(stored, generation) and not stored.in_progress


def _from_since(generation: Generation) -> CursorState | None:
    return CursorState(at=generation.since) if generation.since is not None else None


def _committed(stored: CursorState) -> CursorState | None:
    """The last committed page of an in-progress stream, or None if it has none yet."""
    if stored.at is None and not stored.resume:
        return None
    return stored.mark()


def start_position(stored: CursorState, generation: Generation) -> tuple[Step, CursorState | None]:
    """Where one object's pass over ``generation`` begins, from its stored ``backfill`` cursor."""
    legacy = read_generation(stored) is None
    if stored.in_progress and (belongs_to(stored, generation) or legacy):
        committed = _committed(stored)
        if committed is not None:
            return Step.RESUME, committed
    return Step.START, _from_since(generation)


def newest_generation(stored: Mapping[str, CursorState]) -> Generation | None:
    found = [g for g in (read_generation(s) for s in stored.values()) if g is not None]
    return max(found, key=lambda g: g.started_at) if found else None


def open_generation(stored: Mapping[str, CursorState]) -> Generation | None:
    """The newest generation if some object carrying it has not completed it, else None."""
    newest = newest_generation(stored)
    if newest is None:
        return None
    carriers = [s for s in stored.values() if belongs_to(s, newest)]
    return newest if any(not is_complete(s, newest) for s in carriers) else None


def plan_backfill(
    stored: Mapping[str, CursorState],
    objects: Sequence[str],
    *,
    since: datetime | None,
    restart: bool,
    now: datetime,
) -> BackfillPlan:
    """Plan a ``sync backfill`` of ``objects`` (in pull order).

    ``stored``: the ``backfill`` cursor of every object of the CRM (missing: never backfilled),
    not only the requested ones, since an object outside the command can keep the unit open.
    Raises :class:`BackfillConflictError` when an open backfill was started with another since.
    """
    current = None if restart else open_generation(stored)
    if current is not None and not _same_since(current.since, since):
        raise BackfillConflictError(
            f"an unfinished backfill (started {current.key}, "
            f"--since {_iso(current.since) if current.since else 'none'}) is open; run it again "
            "with the same --since to resume it, or add --restart to begin a new backfill"
        )
    generation = current or Generation(_aware(now), since)
    steps: list[ObjectStep] = []
    for name in objects:
        state = stored.get(name, CursorState())
        if current is not None and is_complete(state, current):
            steps.append(ObjectStep(name, Step.DONE, None, state.completed_at))
            continue
        if restart:
            steps.append(ObjectStep(name, Step.START, _from_since(generation)))
            continue
        step, start = start_position(state, generation)
        steps.append(ObjectStep(name, step, start))
    return BackfillPlan(generation, tuple(steps), continued=current is not None)


def _same_since(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return _aware(a) == _aware(b)


def generation_for(stored: CursorState, since: datetime | None, now: datetime) -> Generation:
    """The generation of a single-object pass nobody planned (the engine called directly):
    the object's own open one, else a new one."""
    found = read_generation(stored)
    if found is not None and stored.in_progress:
        return found
    return Generation(_aware(now), since)


# --------------------------------------------------------------------------------------------
# States to store (``sync_cursors`` row of stream ``backfill``)
# --------------------------------------------------------------------------------------------


def pending_state(generation: Generation) -> CursorState:
    """An object that joined the generation and has no committed page yet."""
    return generation.stamp(CursorState(in_progress=True))


def page_state(generation: Generation, saved: CursorState) -> CursorState:
    """After a committed page: its (capped) position and the adapter's resume token."""
    return generation.stamp(replace(saved.mark(), in_progress=True))


def read_position(stored: CursorState, generation: Generation) -> CursorState | None:
    """The newest position this generation actually read and committed for the object.

    None when it committed no page: the pass read nothing, so nothing may be promoted (the
    ``--since`` it started from is a query bound, not a stamp that was read).
    """
    if not belongs_to(stored, generation) or stored.at is None:
        return None
    return CursorState(stored.at, stored.id)


def completed_state(
    generation: Generation, read: CursorState | None, completed_at: datetime
) -> CursorState:
    """The object finished the generation; ``read`` is :func:`read_position`."""
    done = CursorState(read.at, read.id) if read is not None else CursorState()
    return generation.stamp(replace(done, completed_at=_aware(completed_at)))


def describe(plan: BackfillPlan, object_name: str) -> dict[str, Any]:
    """The ``backfill`` entry of a run summary: the generation and what the pass did."""
    step = plan.step_for(object_name)
    described: dict[str, Any] = {**plan.generation.as_dict(), "step": str(step.step)}
    if step.completed_at is not None:
        described["completed_at"] = _iso(step.completed_at)
    return described
