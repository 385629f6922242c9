"""The worker's batch as the unit of work (#20 item 7): the won events of one batch start their
onboarding in one transaction (``app.wiring.onboarding_start.start_onboarding_batch``), with the
CSM loads read once and kept current as the batch assigns, and still exactly once per
opportunity, one bad event failing alone, and nothing half-done after a kill.

The events are stored in the inbox and processed with ``process_inbox_events`` (the worker's and
the job's entry point) against the sandbox's HubSpot, without a server in between.
SQLite and PostgreSQL (the suite's database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db.csm_store import csm_candidates
from app.db.engine import make_session_factory
from app.db.models import (
    Account,
    AccountEvent,
    Csm,
    HandoverNote,
    OnboardingPlan,
    Opportunity,
    WebhookEvent,
)
from app.wiring import onboarding_start
from app.wiring.webhook_processing import ProcessingContext, process_inbox_events, sweep
from crmsync_sandbox import Sandbox, SandboxConfig
from tests.support.webhooks import (
    hubspot_api,
    hubspot_company_ids,
    sandbox_settings,
    seed_csms,
    store_closed_won,
)

_keys = count(1)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=40, seed=27)) as sb:
        yield sb


class Clock:
    """Real time, plus what a test adds (to run past a lease)."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def context(
    sandbox: Sandbox, database_url: str, engine: Engine, clock: Clock
) -> Iterator[ProcessingContext]:
    settings = sandbox_settings(sandbox, database_url, push_writebacks=False, batch_size=50)
    ctx = ProcessingContext(settings, make_session_factory(engine), clock=clock)
    yield ctx
    ctx.close()


def won_deals(sb: Sandbox, companies: list[str], name: str = "batch") -> list[str]:
    """A won new-business deal on each of ``companies`` (in that order)."""
    inputs = [
        {
            "properties": {
                "dealname": f"{name} {next(_keys)}",
                "amount": "9000",
                "closedate": "2026-12-04T00:00:00.000Z",
                "dealstage": "closedwon",
                "pipeline": "default",
                "dealtype": "newbusiness",
            },
            "associations": [
                {
                    "to": {"id": company},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}],
                }
            ],
        }
        for company in companies
    ]
    made = hubspot_api(sb, "POST", "/crm/v3/objects/deals/batch/create", json={"inputs": inputs})
    by_name = {r["properties"]["dealname"]: str(r["id"]) for r in made["results"]}
    return [by_name[i["properties"]["dealname"]] for i in inputs]


def company_ids(sb: Sandbox, n: int, skip: int = 0) -> list[str]:
    return hubspot_company_ids(sb)[skip : skip + n]


def store(engine: Engine, deals: list[str]) -> list[int]:
    """One inbox event per entry of ``deals`` (a deal twice: two deliveries of its close)."""
    return store_closed_won(engine, deals, now=datetime.now(UTC))


def inbox(engine: Engine, ids: list[int]) -> list[WebhookEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids)).order_by("id")))


def plans(engine: Engine) -> dict[str, list[OnboardingPlan]]:
    """Deal id -> its plans."""
    with Session(engine) as s:
        rows = s.execute(
            select(Opportunity.hs_id, OnboardingPlan).join(
                OnboardingPlan, OnboardingPlan.opportunity_id == Opportunity.id
            )
        ).all()
    out: dict[str, list[OnboardingPlan]] = {}
    for deal, plan in rows:
        out.setdefault(str(deal), []).append(plan)
    return out


def one_plan_each(engine: Engine, deals: list[str]) -> dict[str, list[OnboardingPlan]]:
    """:func:`plans`, having checked that every deal of ``deals`` has one plan and no other
    deal has any."""
    made = plans(engine)
    assert sorted(made) == sorted(deals)
    assert all(len(p) == 1 for p in made.values())
    return made


def cs_handover_notes(engine: Engine) -> int:
    """How many handover notes crmsync wrote (origin ``cs``)."""
    with Session(engine) as s:
        return int(
            s.scalar(
                select(func.count()).select_from(HandoverNote).where(HandoverNote.origin == "cs")
            )
            or 0
        )


def test_a_batch_with_a_duplicate_gives_one_plan_per_deal_and_keeps_the_account_csm(
    sandbox: Sandbox, engine: Engine, context: ProcessingContext
) -> None:
    """Two deals on each of two companies, and the first deal delivered twice, in one batch:
    one plan per deal; the second delivery is done and names the first one's plan; the second
    deal of a company keeps the CSM the first one got a moment before (continuity 8.3 step 2,
    seen in memory, not after a commit)."""
    seed_csms(engine)
    a, b = company_ids(sandbox, 2)
    deals = won_deals(sandbox, [a, a, b, b])
    ids = store(engine, [deals[0], *deals, deals[3]])
    states = process_inbox_events(ids, context)
    assert sorted(states) == sorted(ids)
    rows = inbox(engine, ids)
    assert [r.status for r in rows] == ["done"] * 6, [(r.status, r.last_error) for r in rows]
    made = one_plan_each(engine, deals)
    first, repeat = rows[0], rows[1]  # deals[0] delivered twice, in that order
    assert (first.last_error or "").startswith(f"plan {made[deals[0]][0].id} ")
    assert repeat.last_error == f"onboarding plan {made[deals[0]][0].id} exists"
    assert rows[5].last_error == f"onboarding plan {made[deals[3]][0].id} exists"
    assert made[deals[0]][0].csm_id == made[deals[1]][0].csm_id
    assert made[deals[2]][0].csm_id == made[deals[3]][0].csm_id
    with Session(engine) as s:
        started = s.scalars(
            select(AccountEvent).where(AccountEvent.kind == onboarding_start.ONBOARDING_STARTED)
        ).all()
        assert sorted(e.payload["plan_id"] for e in started) == sorted(
            p[0].id for p in made.values()
        )
        assert [e.payload["csm_reason"] for e in started].count("continuity") == 2
    assert cs_handover_notes(engine) == 4


def test_loads_grow_as_the_batch_assigns(
    sandbox: Sandbox, engine: Engine, context: ProcessingContext
) -> None:
    """Six new customers in one batch, three CSMs with room for about one onboarding each: the
    loads read once are updated as each account is assigned, so no capacity choice overfills a
    CSM (read once and never updated, every account would go to the same, lowest-id CSM)."""
    seed_csms(engine, capacity=5)
    deals = won_deals(sandbox, company_ids(sandbox, 6, skip=2))
    ids = store(engine, deals)
    process_inbox_events(ids, context)
    assert {r.status for r in inbox(engine, ids)} == {"done"}
    made = plans(engine)
    assert sorted(made) == sorted(deals)
    with Session(engine) as s:
        started = s.scalars(
            select(AccountEvent).where(AccountEvent.kind == onboarding_start.ONBOARDING_STARTED)
        ).all()
        by_capacity = {e.payload["csm"] for e in started if e.payload["csm_reason"] == "capacity"}
        capacity = {c.email: c.capacity_units for c in s.scalars(select(Csm))}
        loads = {c.email: c.load_units for c in csm_candidates(s, today=context.clock().date())}
    assert by_capacity, [e.payload for e in started]
    for email in by_capacity:
        assert loads[email] <= capacity[email], (email, loads)


def test_one_failing_event_fails_alone_and_leaves_its_account_as_it_was(
    sandbox: Sandbox,
    engine: Engine,
    context: ProcessingContext,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plan of one deal cannot be built (its tier was already set on the account in
    memory): that event is ``failed`` with its error and retried; its account's columns are as
    they were; the other events of the batch commit their plans. The retry makes its plan."""
    seed_csms(engine)
    deals = won_deals(sandbox, company_ids(sandbox, 3, skip=8), name="isolated")
    real = onboarding_start.build_plan

    def build_plan(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("deal_name", "").endswith(f" {bad_key}"):
            raise ValueError("no plan for this one")
        return real(*args, **kwargs)

    bad = deals[1]
    deal = hubspot_api(
        sandbox, "GET", f"/crm/v3/objects/deals/{bad}", params={"properties": "dealname"}
    )
    bad_key = deal["properties"]["dealname"].rsplit(" ", 1)[1]
    monkeypatch.setattr(onboarding_start, "build_plan", build_plan)
    ids = store(engine, deals)
    process_inbox_events(ids, context)
    rows = inbox(engine, ids)
    assert [r.status for r in rows] == ["done", "failed", "done"]
    assert "ValueError: no plan for this one" in (rows[1].last_error or "")
    assert sorted(plans(engine)) == sorted([deals[0], deals[2]])
    with Session(engine) as s:
        account = s.scalars(
            select(Account)
            .join(Opportunity, Opportunity.account_id == Account.id)
            .where(Opportunity.hs_id == bad)
        ).one()
        # the tier computed for it in memory was put back (the pull leaves it empty: the
        # mapping only pushes it)
        assert account.tier is None
        assert account.cs_changed_at is None
        assert account.csm_id is None
        assert account.lifecycle_stage != "onboarding"
        assert not account.field_stamps
    monkeypatch.setattr(onboarding_start, "build_plan", real)
    clock.ahead = timedelta(minutes=1)  # past its backoff
    sweep(context)
    assert [r.status for r in inbox(engine, ids)] == ["done"] * 3
    one_plan_each(engine, deals)


def test_a_plan_stored_meanwhile_rolls_the_batch_back_and_redoes_it_event_by_event(
    sandbox: Sandbox, engine: Engine, context: ProcessingContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch did not see a plan that exists (as when another worker commits it between
    the batch's read and its insert): the plan insert conflicts, the batch rolls back and its
    events are redone one per transaction: the repeated deal is ``done`` with the existing
    plan, the others get theirs, and nothing is doubled (no second handover note either)."""
    seed_csms(engine)
    deals = won_deals(sandbox, company_ids(sandbox, 3, skip=12), name="conflict")
    process_inbox_events(store(engine, deals[:1]), context)
    (existing,) = plans(engine)[deals[0]]
    real = onboarding_start._read_batch
    hidden = []

    def read_batch(*args: Any, **kwargs: Any) -> Any:
        batch = real(*args, **kwargs)
        if not hidden:  # the first read only: the redo sees the plan
            hidden.append(dict(batch.plans))
            batch.plans.clear()
        return batch

    monkeypatch.setattr(onboarding_start, "_read_batch", read_batch)
    ids = store(engine, deals)
    process_inbox_events(ids, context)
    assert hidden == [{existing.opportunity_id: existing.id}]
    rows = inbox(engine, ids)
    assert [r.status for r in rows] == ["done"] * 3, [(r.status, r.last_error) for r in rows]
    assert rows[0].last_error == f"onboarding plan {existing.id} exists"
    one_plan_each(engine, deals)
    assert cs_handover_notes(engine) == 3


class Killed(BaseException):
    """Stands for kill -9: nothing of the process runs after it (no ``except Exception``)."""


def test_a_kill_between_the_claim_and_the_commit_loses_and_doubles_nothing(
    sandbox: Sandbox,
    engine: Engine,
    context: ProcessingContext,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch is claimed, read and written, and the process dies before the commit: no
    plan, note, account event or CSM is left, the events stay ``processing`` until their lease
    ends, and then the sweeper's attempt makes one plan per deal."""
    seed_csms(engine)
    deals = won_deals(sandbox, company_ids(sandbox, 3, skip=16), name="killed")
    ids = store(engine, deals)

    def finish_many(*args: Any, **kwargs: Any) -> None:
        raise Killed

    monkeypatch.setattr(onboarding_start, "finish_many", finish_many)
    with pytest.raises(Killed):
        process_inbox_events(ids, context)
    assert {r.status for r in inbox(engine, ids)} == {"processing"}
    assert plans(engine) == {}
    with Session(engine) as s:
        for model in (OnboardingPlan, AccountEvent):
            assert s.scalar(select(func.count()).select_from(model)) == 0
        assert s.scalar(select(func.count()).where(HandoverNote.origin == "cs")) == 0
        assert s.scalar(select(func.count()).where(Account.csm_id.is_not(None))) == 0
    monkeypatch.undo()
    assert sweep(context) == 0  # leased: not due yet
    clock.ahead = timedelta(seconds=context.settings.webhooks.lease_seconds + 1)
    assert sweep(context) == 3
    rows = inbox(engine, ids)
    assert [r.status for r in rows] == ["done"] * 3
    assert [r.attempts for r in rows] == [2, 2, 2]
    one_plan_each(engine, deals)


def test_two_workers_with_the_same_deals_at_once_make_one_plan_each(
    sandbox: Sandbox, engine: Engine, context: ProcessingContext
) -> None:
    """Two batches holding deliveries of the same deals run at the same moment (two worker
    threads, each with its own claim): one plan per deal, every event ``done``; the batch
    that comes second finds the first one's plans (SQLite: after its write lock; PostgreSQL:
    after the account locks, or by the plan's unique key and a redo)."""
    import threading

    seed_csms(engine)
    deals = won_deals(sandbox, company_ids(sandbox, 4, skip=20), name="race")
    first, second = store(engine, deals), store(engine, list(reversed(deals)))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(ids: list[int]) -> None:
        try:
            start.wait()
            process_inbox_events(ids, context)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids,)) for ids in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    rows = inbox(engine, first + second)
    assert {r.status for r in rows} == {"done"}, [(r.status, r.last_error) for r in rows]
    one_plan_each(engine, deals)
    exists = [r for r in rows if (r.last_error or "").endswith(" exists")]
    assert len(exists) == len(deals)
    assert cs_handover_notes(engine) == len(deals)
