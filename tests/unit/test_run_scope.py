"""The run scope (app/sync/run_scope.py) on its own: lease, abandoned runs, run row, heartbeat.

An in-memory store records what the scope asks of it; the SQL store's side of the same calls is
tested in tests/integration/test_leases.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from app.core.runs import RunStatus
from app.errors import ErrorCategory, UpstreamError
from app.sync import run_scope
from app.sync.ports import Counts, LeaseHeldError
from app.sync.run_scope import RunRefused, RunScope, RunSpec

SPEC = RunSpec("pull", "salesforce", "Account", "cli", abandoned_kinds=("pull", "backfill"))
TTL = timedelta(seconds=60)


class MemoryStore:
    """The part of SyncStore a run scope uses, in memory."""

    def __init__(self, *, held_by: str | None = None) -> None:
        self.held_by = held_by
        self.runs: dict[int, dict[str, Any]] = {}
        self.abandoned: list[tuple[str, str, list[str], str, str | None]] = []
        self.beats: list[int | None] = []
        self.released: list[str] = []

    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> str | None:
        if self.held_by is not None:
            raise LeaseHeldError(f"lease {name} is held by {self.held_by} until 12:01:00")
        self.held_by = holder
        return None

    def release_lease(self, name: str, holder: str) -> None:
        assert self.held_by == holder
        self.held_by = None
        self.released.append(name)

    def heartbeat(self, name: str, holder: str, ttl: timedelta, run_id: int | None) -> bool:
        self.beats.append(run_id)
        return self.held_by == holder

    def close_abandoned_runs(
        self, crm: str, object_name: str, kinds: Sequence[str], error: str
    ) -> int:
        self.abandoned.append((crm, object_name, list(kinds), error, self.held_by))
        return 1

    def start_run(
        self,
        *,
        kind: str,
        crm: str,
        object_name: str,
        triggered_by: str,
        params: Mapping[str, Any],
        cursor_from: Mapping[str, Any] | None,
    ) -> int:
        run_id = len(self.runs) + 1
        self.runs[run_id] = {"kind": kind, "status": "running", "cursor_from": cursor_from}
        return run_id

    def cancel_requested(self, run_id: int) -> bool:
        return self.runs[run_id]["status"] == "cancelling"

    def claim_run(
        self, run_id: int, *, params: Mapping[str, Any], cursor_from: Mapping[str, Any] | None
    ) -> bool:
        if self.runs.get(run_id, {}).get("status") != "queued":
            return False
        self.runs[run_id].update(status="running", cursor_from=cursor_from)
        return True

    def finish_run(
        self,
        run_id: int,
        counts: Counts,
        *,
        status: str,
        cursor_to: Mapping[str, Any] | None,
        error: str | None,
    ) -> None:
        assert self.runs[run_id]["status"] in ("running", "cancelling"), "a run is finished once"
        self.runs[run_id].update(
            status=str(status), cursor_to=cursor_to, error=error, api_calls=counts.api_calls
        )


def scope_for(store: MemoryStore, ttl: timedelta = TTL) -> RunScope:
    return RunScope(store, SPEC, "host:1:abcd", ttl)  # type: ignore[arg-type]


def test_refused_while_a_live_pass_holds_the_lease() -> None:
    store = MemoryStore(held_by="other:2:beef")
    ran = False

    def work() -> None:
        nonlocal ran
        with scope_for(store):
            ran = True

    with pytest.raises(RunRefused) as refused:
        work()
    assert not ran
    result = refused.value.result
    assert result.status is RunStatus.CANCELLED
    assert result.error is not None
    assert result.error.startswith("could not start: lease sync:salesforce:Account is held by")
    assert "other:2:beef" in result.error
    assert store.runs[result.run_id or 0]["status"] == "cancelled"  # recorded, for the admin
    assert store.held_by == "other:2:beef"  # not ours: not released
    assert store.abandoned == []


def test_abandoned_runs_are_closed_holding_the_lease() -> None:
    store = MemoryStore()
    with scope_for(store) as scope:
        scope.start(params={}, cursor_from=None)
    [(crm, obj, kinds, error, holder)] = store.abandoned
    assert (crm, obj, kinds, holder) == (
        "salesforce",
        "Account",
        ["pull", "backfill"],
        scope.holder,
    )
    assert error.startswith("abandoned: ")
    assert store.released == ["sync:salesforce:Account"]


@pytest.mark.parametrize(
    ("failed", "expected"),
    [
        (0, RunStatus.SUCCEEDED),
        (2, RunStatus.PARTIAL),
    ],
)
def test_a_normal_exit_finishes_the_run_with_its_counts(failed: int, expected: RunStatus) -> None:
    store = MemoryStore()
    calls = [10]
    with scope_for(store) as scope:
        run_id = scope.start(params={}, cursor_from={"at": None}, api_calls=lambda: calls[0])
        calls[0] += 3
        scope.counts.read = 5
        scope.counts.failed = failed
        scope.cursor_to = {"at": "2026-01-01T00:00:00+00:00"}
    assert scope.result is not None
    assert (scope.result.run_id, scope.result.status) == (run_id, expected)
    assert scope.result.counts.api_calls == 3
    assert store.runs[run_id]["status"] == str(expected)
    assert store.runs[run_id]["cursor_to"] == {"at": "2026-01-01T00:00:00+00:00"}
    assert store.held_by is None


@pytest.mark.parametrize(
    ("error", "status", "message", "category"),
    [
        (ValueError("boom"), RunStatus.FAILED, "ValueError: boom", None),
        (
            UpstreamError("503", category=ErrorCategory.TRANSIENT, retriable=True),
            RunStatus.FAILED,
            "UpstreamError: 503",
            ErrorCategory.TRANSIENT,
        ),
        (KeyboardInterrupt("SIGTERM"), RunStatus.CANCELLED, "interrupted (SIGTERM): ", None),
    ],
)
def test_an_exception_finishes_the_run_and_propagates(
    error: BaseException, status: RunStatus, message: str, category: ErrorCategory | None
) -> None:
    store = MemoryStore()
    scope = scope_for(store)

    def work() -> None:
        with scope:
            scope.start(params={}, cursor_from=None)
            scope.cursor_to = {"at": "page 1"}  # the last committed page
            raise error

    with pytest.raises(type(error)):
        work()
    assert scope.result is not None
    assert scope.result.status is status
    assert (scope.result.error or "").startswith(message)
    assert scope.result.error_category is category
    assert store.runs[1]["status"] == str(status)
    assert store.runs[1]["cursor_to"] == {"at": "page 1"}
    assert store.held_by is None  # released
    assert not scope.heartbeat.running


def test_an_exception_before_the_run_started_leaves_no_run_and_releases() -> None:
    store = MemoryStore()
    scope = scope_for(store)

    def work() -> None:
        with scope:
            raise OSError("database gone")

    with pytest.raises(OSError, match="database gone"):
        work()
    assert scope.result is None
    assert store.runs == {}
    assert store.held_by is None


def test_the_heartbeat_beats_the_run_and_stops_on_exit() -> None:
    store = MemoryStore()
    with scope_for(store, ttl=timedelta(seconds=0.03)) as scope:
        run_id = scope.start(params={}, cursor_from=None)
        deadline = time.monotonic() + 5
        while run_id not in store.beats and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scope.heartbeat.running
    assert run_id in store.beats
    assert not scope.heartbeat.running
    beats = len(store.beats)
    time.sleep(0.05)
    assert len(store.beats) == beats  # no beat after the exit


def test_a_run_is_finished_once() -> None:
    store = MemoryStore()
    with scope_for(store) as scope:
        scope.start(params={}, cursor_from=None)
        first = scope.finish(RunStatus.FAILED, error="stopped early")
    assert scope.result is first  # the exit did not finish it again
    assert store.runs[1]["status"] == "failed"


def test_a_cancel_request_stops_the_run_at_its_next_commit_point() -> None:
    store = MemoryStore()
    scope = scope_for(store)
    committed: list[int] = []

    def work() -> None:
        with scope:
            run_id = scope.start(params={}, cursor_from=None)
            for page in range(1, 5):
                committed.append(page)
                if page == 2:
                    store.runs[run_id]["status"] = "cancelling"  # POST .../cancel
                scope.cursor_to = {"page": page}  # after the page's commit

    with pytest.raises(run_scope.RunCancelled):
        work()
    assert committed == [1, 2]
    run = store.runs[1]
    assert run["status"] == "cancelled"
    assert run["cursor_to"] == {"page": 2}
    assert run["error"].startswith("cancelled on request")
    assert store.held_by is None


def test_a_job_adopts_its_queued_row_and_waits_while_the_lease_is_held() -> None:
    store = MemoryStore()
    store.runs[7] = {"kind": "pull", "status": "queued", "cursor_from": None}
    with run_scope.adopting(run_scope.QueuedRun(7, "pull", "salesforce", "Account")):
        with scope_for(store) as scope:
            assert scope.start(params={}, cursor_from={"at": "x"}) == 7
        assert store.runs[7]["status"] == "succeeded"
        assert len(store.runs) == 1
        # the row is claimed: a second pass of the same command does not adopt it again
        with scope_for(store) as again:
            assert again.start(params={}, cursor_from=None) != 7

    store.runs[9] = {"kind": "pull", "status": "queued", "cursor_from": None}
    store.held_by = "other:2:beef"

    def waiting() -> None:
        with run_scope.adopting(run_scope.QueuedRun(9, "pull", "salesforce", "Account")):
            scope_for(store).__enter__()

    with pytest.raises(RunRefused) as refused:
        waiting()
    assert refused.value.result.status is RunStatus.QUEUED
    assert store.runs[9]["status"] == "queued"  # no "could not start" row: it waits


def test_a_row_no_longer_queued_is_not_run() -> None:
    store = MemoryStore()
    store.runs[3] = {"kind": "pull", "status": "succeeded", "cursor_from": None}
    ran = False

    def work() -> None:
        nonlocal ran
        with (
            run_scope.adopting(run_scope.QueuedRun(3, "pull", "salesforce", "Account")),
            scope_for(store) as scope,
        ):
            scope.start(params={}, cursor_from=None)
            ran = True

    with pytest.raises(RunRefused) as refused:
        work()
    assert not ran
    assert refused.value.result.status is RunStatus.CANCELLED
    assert store.runs[3]["status"] == "succeeded"


class SpentAfter:
    """A budget gate whose CRM's share is spent once ``pages`` commit points have passed."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def stop_reason(self, crm: str) -> str | None:
        self.asked.append(crm)
        return "until about 2026-12-08T10:00+00:00" if len(self.asked) > self.pages else None


def test_the_budget_gate_stops_the_run_at_the_commit_point_where_the_share_is_spent() -> None:
    store = MemoryStore()
    gate = SpentAfter(2)
    committed: list[int] = []
    with run_scope.budget_gated(gate):
        scope = scope_for(store)

    def work() -> None:
        with scope:
            scope.start(params={}, cursor_from=None)
            for page in range(1, 6):
                committed.append(page)
                scope.cursor_to = {"page": page}  # after the page's commit

    with pytest.raises(run_scope.BudgetSpent):
        work()
    assert committed == [1, 2, 3]
    assert gate.asked == ["salesforce"] * 3
    run = store.runs[1]
    assert run["status"] == "cancelled"
    assert run["cursor_to"] == {"page": 3}  # the last committed page
    assert run["error"].startswith("waiting for API budget")
    assert "until about 2026-12-08T10:00" in run["error"]
    assert store.held_by is None


def test_the_budget_gate_lets_a_pass_that_read_to_the_end_finish() -> None:
    store = MemoryStore()
    with run_scope.budget_gated(SpentAfter(0)):
        scope = scope_for(store)
    with scope:
        scope.start(params={}, cursor_from=None)
        scope.reached_end({"page": "last"})  # nothing left to call: the guard has no say
    assert store.runs[1]["status"] == "succeeded"
    assert store.runs[1]["cursor_to"] == {"page": "last"}


def test_without_a_gate_nothing_is_asked() -> None:
    store = MemoryStore()
    scope = scope_for(store)  # a foreground command: no job, no gate
    assert scope.gate is None
    with scope:
        scope.start(params={}, cursor_from=None)
        scope.cursor_to = {"page": 1}
    assert store.runs[1]["status"] == "succeeded"
