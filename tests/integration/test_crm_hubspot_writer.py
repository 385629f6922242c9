"""HubSpotWriter against the sandbox, over HTTPS, through hubspot-api-client unchanged.

The sandbox's rate limiter is off (``hs_rate_limits=False``): the 429s a test wants are
injected through the fault API. Every test asserts the exact number of requests the writer made.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.crm.hubspot.writer import HubSpotWriter
from app.crm.writes import (
    Association,
    WriteKind,
    WriteOp,
    WriteOutcome,
    WriteTuning,
    planned_calls,
)
from app.settings import Settings
from crmsync_sandbox import Sandbox, SandboxConfig


def writer_for(sb: Sandbox, **tuning: Any) -> HubSpotWriter:
    settings = Settings(
        hubspot_base_url=sb.info.hubspot.base_url,
        hubspot_access_token=sb.info.hubspot.access_token,
        ca_bundle=sb.info.ca_file,
    )
    return HubSpotWriter(
        settings,
        tuning=WriteTuning(**tuning),
        sleep=lambda _s: None,
        index_lag_margin=timedelta(0),
    )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=300, hs_rate_limits=False)) as sb:
        yield sb


def ids_of(writer: HubSpotWriter, obj: str, n: int) -> list[str]:
    pages = writer.iter_changes(obj, ["hs_object_id"], None, page_size=200)
    ids = sorted((str(r["id"]) for p in pages for r in p.records), key=lambda i: (len(i), i))
    return ids[:n]


def read(sb: Sandbox, obj: str, record_id: str) -> dict[str, Any]:
    record = sb.ctx.emulators["hubspot"].read_record(obj, record_id)
    assert record is not None
    return dict(record)


def calls(sb: Sandbox, needle: str) -> int:
    routes = sb.control("GET", "/stats")["calls"].get("hubspot", {})
    return sum(sum(v.values()) for route, v in routes.items() if needle in route)


def update(key: int, crm_id: str, **fields: Any) -> WriteOp:
    return WriteOp(key=key, kind=WriteKind.UPDATE, fields=fields, crm_id=crm_id)


def upsert(key: int, ext: str, **fields: Any) -> WriteOp:
    return WriteOp(key=key, kind=WriteKind.UPSERT, fields=fields, external_id=ext)


def test_updates_take_ceil_n_over_100_calls_with_only_the_changed_fields(
    sandbox: Sandbox,
) -> None:
    with writer_for(sandbox) as writer:
        ids = ids_of(writer, "companies", 250)
        before = writer.api_calls
        ops = [
            update(i, rid, crmsync_health_score=Decimal(i))
            if i % 2
            else update(i, rid, crmsync_tier="key", crmsync_renewal_date="2027-01-31")
            for i, rid in enumerate(ids)
        ]
        results = writer.write("companies", ops)
        assert writer.api_calls - before == planned_calls("hubspot", 250, 0) == 3
        assert [r.key for r in results] == list(range(250))
        assert all(r.outcome is WriteOutcome.WRITTEN for r in results)
        assert [r.crm_id for r in results] == ids
        one, two = read(sandbox, "companies", ids[1]), read(sandbox, "companies", ids[2])
        assert one["crmsync_health_score"] == "1"
        assert one.get("crmsync_tier") is None
        assert two["crmsync_tier"] == "key"
        assert two["crmsync_renewal_date"] == "2027-01-31"
    assert calls(sandbox, "batch/update") == 3


def test_upserts_create_once_and_a_repeat_matches_the_same_records(sandbox: Sandbox) -> None:
    ops = [upsert(i, f"cs-{i:04d}", name=f"New {i}", crmsync_tier="core") for i in range(150)]
    with writer_for(sandbox) as writer:
        results = writer.write("companies", ops)
        assert writer.api_calls == planned_calls("hubspot", 0, 150) == 2
        assert all(r.outcome is WriteOutcome.CREATED for r in results)
        created = [r.crm_id for r in results]
        assert len(set(created)) == 150
        again = writer.write("companies", ops)
        assert writer.api_calls == 4
        assert all(r.outcome is WriteOutcome.WRITTEN for r in again)
        assert [r.crm_id for r in again] == created
        record = read(sandbox, "companies", str(created[7]))
        assert (record["name"], record["crmsync_id"]) == ("New 7", "cs-0007")


def test_deals_upsert_on_their_own_crmsync_id(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        results = writer.write(
            "deals",
            [upsert(1, "deal-1", dealname="D1", dealstage="appointmentscheduled", amount="10")],
        )
        assert writer.api_calls == 1
        assert results[0].outcome is WriteOutcome.CREATED
        assert read(sandbox, "deals", str(results[0].crm_id))["crmsync_id"] == "deal-1"


def test_the_same_id_twice_goes_into_a_later_call(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        a, b = ids_of(writer, "companies", 2)
        before = writer.api_calls
        results = writer.write(
            "companies",
            [
                update(1, a, crmsync_tier="first"),
                update(2, b, crmsync_tier="b"),
                update(3, a, crmsync_tier="second"),
            ],
        )
        assert writer.api_calls - before == 2
        assert all(r.ok for r in results)
        assert read(sandbox, "companies", a)["crmsync_tier"] == "second"


def test_207_partial_results_are_read_item_by_item(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        ids = ids_of(writer, "companies", 5)
        sandbox.control(
            "POST",
            "/faults/records",
            json={
                "crm": "hubspot",
                "object": "companies",
                "ids": [ids[3]],
                "kind": "validation",
                "field": "crmsync_health_score",
                "message": "Health score must be between 0 and 100",
            },
        )
        ops = [update(i, rid, crmsync_health_score=50) for i, rid in enumerate(ids)]
        ops.append(update(9, "99999999999", crmsync_health_score=50))
        before = writer.api_calls
        results = writer.write("companies", ops)
        assert writer.api_calls - before == 1
        assert [r.ok for r in results] == [True, True, True, False, True, False]
        bad = results[3]
        assert bad.code == "VALIDATION_ERROR"
        assert bad.fields == ("crmsync_health_score",)
        assert "between 0 and 100" in str(bad.message)
        assert not bad.retriable
        assert results[5].code == "OBJECT_NOT_FOUND"
        assert read(sandbox, "companies", ids[4])["crmsync_health_score"] == "50"


def test_a_batch_refused_whole_is_halved_until_the_bad_input_is_alone(sandbox: Sandbox) -> None:
    """An invalid property value makes ``batch/upsert`` answer 400 for the whole call."""
    with writer_for(sandbox) as writer:
        ops = [upsert(i, f"half-{i}", name=f"H{i}", crmsync_health_score="70") for i in range(8)]
        ops[5] = upsert(5, "half-5", name="H5", crmsync_health_score="not a number")
        results = writer.write("companies", ops)
        # 8 -> 4 + 4 -> (2 + 2) -> (1 + 1): 1 + 2 + 2 + 2 calls
        assert writer.api_calls == 7
        assert [r.ok for r in results] == [True] * 5 + [False] + [True] * 2
        assert results[5].code == "VALIDATION_ERROR"
        assert "crmsync_health_score" in str(results[5].message)


def test_locked_inputs_are_sent_again(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        ids = ids_of(writer, "companies", 120)
        sandbox.control(
            "POST",
            "/faults/records",
            json={
                "crm": "hubspot",
                "object": "companies",
                "ids": [ids[1], ids[110]],
                "kind": "lock",
                "count": 1,
            },
        )
        before = writer.api_calls
        results = writer.write(
            "companies", [update(i, r, crmsync_tier="t") for i, r in enumerate(ids)]
        )
        assert writer.api_calls - before == 2 + 1
        assert all(r.ok for r in results)


def test_note_creates_carry_their_associations_and_are_never_duplicated(
    sandbox: Sandbox,
) -> None:
    with writer_for(sandbox) as writer:
        company = ids_of(writer, "companies", 1)[0]
        deal = ids_of(writer, "deals", 1)[0]
        op = WriteOp(
            key=1,
            kind=WriteKind.UPSERT,
            fields={"hs_note_body": "handover", "hs_timestamp": "2026-12-01T10:00:00.000Z"},
            external_id="note-1",
            associations=(Association("companies", company, 190), Association("deals", deal, 214)),
        )
        before = writer.api_calls
        results = writer.write("notes", [op])
        assert writer.api_calls - before == planned_calls("hubspot", 0, 1) == 1
        assert results[0].outcome is WriteOutcome.CREATED
        note = str(results[0].crm_id)
        assert writer.read_associations("notes", "companies", [note]) == {note: [company]}
        assert writer.read_associations("notes", "deals", [note]) == {note: [deal]}
        # The answer was lost and the create is sent again: refused (crmsync_id is unique),
        # then read by crmsync_id and updated: the same note, no second one.
        before = writer.api_calls
        again = writer.write("notes", [replace_body(op, "handover v2")])
        assert writer.api_calls - before == 3
        assert again[0].outcome is WriteOutcome.WRITTEN
        assert again[0].crm_id == note
        assert read(sandbox, "notes", note)["hs_note_body"] == "handover v2"
    assert calls(sandbox, "batch/create") == 2


def replace_body(op: WriteOp, body: str) -> WriteOp:
    return WriteOp(
        key=op.key,
        kind=op.kind,
        fields={**op.fields, "hs_note_body": body},
        external_id=op.external_id,
        associations=op.associations,
    )


def test_a_note_linked_to_a_missing_company_fails_alone(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        company = ids_of(writer, "companies", 1)[0]
        ops = [
            WriteOp(
                key=i,
                kind=WriteKind.UPSERT,
                fields={"hs_note_body": f"n{i}", "hs_timestamp": "2026-12-01T10:00:00.000Z"},
                external_id=f"n-{i}",
                associations=(Association("companies", company if i != 2 else "42", 190),),
            )
            for i in range(4)
        ]
        before = writer.api_calls
        results = writer.write("notes", ops)
        assert writer.api_calls - before == 5  # 4 -> 2 + 2 -> 1 + 1
        assert [r.ok for r in results] == [True, True, False, True]


def test_ten_percent_429s_cost_one_request_each_and_nothing_else(sandbox: Sandbox) -> None:
    with writer_for(sandbox, hubspot_chunk=2) as writer:
        ids = ids_of(writer, "companies", 300)
        sandbox.control(
            "PUT",
            "/faults",
            json={
                "seed": 5,
                "routes": [{"match": "POST /crm/v3/objects/*/batch/*", "rate_limit": 0.1}],
            },
        )
        before = writer.api_calls
        results = writer.write(
            "companies", [update(i, r, crmsync_tier="x") for i, r in enumerate(ids)]
        )
        spent = writer.api_calls - before
        floor = planned_calls("hubspot", 300, 0, WriteTuning(hubspot_chunk=2))
        refused = sum(sandbox.control("GET", "/stats")["rate_limited"]["hubspot"].values())
        assert all(r.ok for r in results)
        assert refused > 0
        assert spent == floor + refused
        assert spent <= floor * 1.2


def test_5xx_and_resets_are_retried(sandbox: Sandbox) -> None:
    with writer_for(sandbox, hubspot_chunk=5) as writer:
        ids = ids_of(writer, "companies", 100)
        sandbox.control(
            "PUT",
            "/faults",
            json={
                "seed": 9,
                "routes": [
                    {"match": "POST /crm/v3/objects/*/batch/*", "unavailable": 0.1, "reset": 0.1}
                ],
            },
        )
        before = writer.api_calls
        results = writer.write(
            "companies", [update(i, r, crmsync_tier="y") for i, r in enumerate(ids)]
        )
        assert all(r.ok for r in results)
        assert writer.api_calls - before > 20
        stats = sandbox.control("GET", "/stats")
        assert stats["faults"]
        assert all(read(sandbox, "companies", r)["crmsync_tier"] == "y" for r in ids)
