"""SalesforceWriter against the sandbox, over HTTPS, through simple-salesforce unchanged.

Every test asserts the exact number of HTTP requests the writer made (its own counter) and,
where it matters, what the sandbox saw. Retries sleep through an injected no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from app.crm.salesforce.writer import SalesforceWriter
from app.crm.write_chunks import ChunkRefused, send_split
from app.crm.writes import (
    WriteKind,
    WriteOp,
    WriteOutcome,
    WriteResult,
    WriteTuning,
    planned_calls,
)
from app.settings import Settings
from crmsync_sandbox import Sandbox, SandboxConfig


def settings_for(sb: Sandbox) -> Settings:
    sf = sb.info.salesforce
    return Settings(
        salesforce_instance_url=sf.instance_url,
        salesforce_api_version=sf.api_version,
        salesforce_access_token=sf.access_token,
        ca_bundle=sb.info.ca_file,
    )


def writer_for(sb: Sandbox, **tuning: Any) -> SalesforceWriter:
    return SalesforceWriter(settings_for(sb), tuning=WriteTuning(**tuning), sleep=lambda _s: None)


def query(writer: SalesforceWriter, soql: str) -> list[dict[str, Any]]:
    result = writer._call("query", lambda sf: sf.query_all(soql), "Account")
    return list(result["records"])


def route_calls(sb: Sandbox, needle: str) -> int:
    routes = sb.control("GET", "/stats")["calls"].get("salesforce", {})
    return sum(sum(v.values()) for route, v in routes.items() if needle in route)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(accounts=450)) as sb:
        yield sb


def account_ids(writer: SalesforceWriter, n: int) -> list[str]:
    rows = query(writer, f"SELECT Id FROM Account ORDER BY Id LIMIT {n}")
    return [str(r["Id"]) for r in rows]


def update(key: int, crm_id: str, **fields: Any) -> WriteOp:
    return WriteOp(key=key, kind=WriteKind.UPDATE, fields=fields, crm_id=crm_id)


def upsert(key: int, ext: str, **fields: Any) -> WriteOp:
    return WriteOp(key=key, kind=WriteKind.UPSERT, fields=fields, external_id=ext)


def test_updates_take_ceil_n_over_200_calls_and_only_the_changed_fields(
    sandbox: Sandbox,
) -> None:
    with writer_for(sandbox) as writer:
        ids = account_ids(writer, 450)
        before = writer.api_calls
        # Different records change different fields; they still share calls.
        ops = [
            update(i, rid, Health_Score__c=i % 100)
            if i % 2
            else update(i, rid, Tier__c="key", Renewal_Date__c="2027-01-31")
            for i, rid in enumerate(ids)
        ]
        results = writer.write("Account", ops)
        assert writer.api_calls - before == planned_calls("salesforce", 450, 0) == 3
        assert [r.key for r in results] == list(range(450))
        assert all(r.outcome is WriteOutcome.WRITTEN for r in results)
        assert [r.crm_id for r in results] == ids
        rows = {
            r["Id"]: r
            for r in query(
                writer, "SELECT Id, Health_Score__c, Tier__c, Renewal_Date__c FROM Account"
            )
        }
        assert rows[ids[1]]["Health_Score__c"] == 1
        assert rows[ids[1]]["Tier__c"] is None
        assert rows[ids[2]]["Tier__c"] == "key"
        assert rows[ids[2]]["Renewal_Date__c"] == "2027-01-31"
        assert rows[ids[2]]["Health_Score__c"] is None
    assert route_calls(sandbox, "composite/sobjects") == 3


def test_upserts_create_once_and_a_repeat_matches_the_same_records(sandbox: Sandbox) -> None:
    ops = [
        upsert(i, f"00000000-0000-4000-8000-{i:012d}", Name=f"New {i}", ARR__c=Decimal("12.50"))
        for i in range(250)
    ]
    with writer_for(sandbox) as writer:
        results = writer.write("Account", ops)
        assert writer.api_calls == planned_calls("salesforce", 0, 250) == 2
        assert all(r.outcome is WriteOutcome.CREATED for r in results)
        created = [r.crm_id for r in results]
        assert len(set(created)) == 250
        # A create whose answer was lost is sent again: it matches, never duplicates.
        again = writer.write("Account", ops)
        assert writer.api_calls == 4
        assert all(r.outcome is WriteOutcome.WRITTEN for r in again)
        assert [r.crm_id for r in again] == created
        rows = query(writer, "SELECT Id, ARR__c FROM Account WHERE Name LIKE 'New %'")
        assert len(rows) == 250
        assert {r["ARR__c"] for r in rows} == {Decimal("12.5")}


def test_updates_and_upserts_of_one_object_share_no_call_but_each_kind_is_chunked(
    sandbox: Sandbox,
) -> None:
    with writer_for(sandbox) as writer:
        ids = account_ids(writer, 150)
        ops = [update(i, rid, Plan__c="pro") for i, rid in enumerate(ids)]
        ops += [upsert(1000 + i, f"mixed-{i}", Name=f"Mixed {i}") for i in range(60)]
        before = writer.api_calls
        results = writer.write("Account", ops)
        assert writer.api_calls - before == planned_calls("salesforce", 150, 60) == 2
        assert [r.key for r in results] == [op.key for op in ops]
        assert sum(r.outcome is WriteOutcome.CREATED for r in results) == 60


def test_a_validation_rule_fails_one_record_and_the_others_are_written(
    sandbox: Sandbox,
) -> None:
    with writer_for(sandbox) as writer:
        ids = account_ids(writer, 5)
        sandbox.control(
            "POST",
            "/faults/records",
            json={
                "crm": "salesforce",
                "object": "Account",
                "ids": [ids[2], "ext-bad"],
                "kind": "validation",
                "field": "Health_Score__c",
                "message": "Health score must be between 0 and 100",
            },
        )
        ops = [update(i, rid, Health_Score__c=50) for i, rid in enumerate(ids)]
        ops += [upsert(10, "ext-bad", Name="Bad"), upsert(11, "ext-good", Name="Good")]
        before = writer.api_calls
        results = writer.write("Account", ops)
        assert writer.api_calls - before == 2
        bad = results[2]
        assert bad.outcome is WriteOutcome.FAILED
        assert bad.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        assert bad.message == "Health score must be between 0 and 100"
        assert bad.fields == ("Health_Score__c",)
        assert not bad.retriable
        assert results[5].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        assert [r.ok for r in results] == [True, True, False, True, True, False, True]


def test_a_chunk_refused_whole_is_halved_until_the_bad_record_is_alone(
    sandbox: Sandbox,
) -> None:
    """A value Salesforce cannot deserialize refuses the whole Collections call (400
    ``JSON_PARSER_ERROR``, nothing written): the writer splits the chunk in halves until the
    record alone is refused, and writes the other 199."""
    bad = 150
    with writer_for(sandbox) as writer:
        ids = account_ids(writer, 200)
        ops = [update(i, rid, Health_Score__c=61) for i, rid in enumerate(ids)]
        ops[bad] = update(bad, ids[bad], Health_Score__c="sixty-one")
        before = writer.api_calls
        results = writer.write("Account", ops)
        # The same halving rule, counted without a CRM: each refused chunk costs its call,
        # then one call per half.
        expected = 0

        def send(chunk: list[int]) -> dict[int, WriteResult]:
            nonlocal expected
            expected += 1
            if bad in chunk:
                raise ChunkRefused("JSON_PARSER_ERROR", "refused")
            return {i: WriteResult(i, WriteOutcome.WRITTEN) for i in chunk}

        send_split(list(range(200)), send, list(range(200)))
        assert writer.api_calls - before == expected == 15
        refused = results[bad]
        assert refused.outcome is WriteOutcome.FAILED
        assert refused.code == "JSON_PARSER_ERROR"
        assert not refused.retriable
        assert [i for i, r in enumerate(results) if not r.ok] == [bad]
        stored = {
            r["Id"]: r["Health_Score__c"]
            for r in query(writer, "SELECT Id, Health_Score__c FROM Account ORDER BY Id LIMIT 200")
        }
        assert [rid for rid in ids if stored[rid] != 61] == [ids[bad]]


def test_unable_to_lock_row_is_sent_again_for_those_records_only(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        ids = account_ids(writer, 300)
        sandbox.control(
            "POST",
            "/faults/records",
            json={
                "crm": "salesforce",
                "object": "Account",
                "ids": [ids[3], ids[250]],
                "kind": "lock",
                "count": 2,
            },
        )
        before = writer.api_calls
        results = writer.write("Account", [update(i, r, Tier__c="t") for i, r in enumerate(ids)])
        # 2 chunks, then the two locked records together, twice (each lock fails two writes).
        assert writer.api_calls - before == 2 + 2
        assert all(r.outcome is WriteOutcome.WRITTEN for r in results)


def test_a_lock_that_never_clears_ends_failed_and_retriable(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        ids = account_ids(writer, 3)
        sandbox.control(
            "POST",
            "/faults/records",
            json={"crm": "salesforce", "object": "Account", "ids": [ids[0]], "kind": "lock"},
        )
        before = writer.api_calls
        results = writer.write("Account", [update(i, r, Tier__c="t") for i, r in enumerate(ids)])
        attempts = writer._policy.max_attempts
        assert writer.api_calls - before == attempts
        assert results[0].code == "UNABLE_TO_LOCK_ROW"
        assert results[0].retriable
        assert results[1].ok
        assert results[2].ok


def test_deleted_and_unknown_records_fail_without_raising(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        ids = account_ids(writer, 2)
        writer._call("delete", lambda sf: sf.Account.delete(ids[0]), "Account")
        results = writer.write(
            "Account",
            [
                update(0, ids[0], Tier__c="t"),
                update(1, ids[1], Tier__c="t"),
                update(2, "003000000000000AAA", Tier__c="t"),
                update(3, "001000000000000AAA", Tier__c="t"),
            ],
        )
        assert results[0].code == "ENTITY_IS_DELETED"
        assert results[1].ok
        assert results[2].code == "MALFORMED_ID"
        assert results[3].code == "INVALID_CROSS_REFERENCE_KEY"
        assert not any(r.retriable for r in results)


def test_note_upsert_is_a_create_without_external_id(sandbox: Sandbox) -> None:
    with writer_for(sandbox) as writer:
        parent = account_ids(writer, 1)[0]
        ops = [
            WriteOp(
                key=i,
                kind=WriteKind.UPSERT,
                fields={"ParentId": parent, "Title": f"Handover {i}", "Body": "sold: 10 seats"},
            )
            for i in range(3)
        ]
        before = writer.api_calls
        results = writer.write("Note", ops)
        assert writer.api_calls - before == 1
        assert all(r.outcome is WriteOutcome.CREATED for r in results)
        notes = query(writer, f"SELECT Id, Title FROM Note WHERE ParentId = '{parent}'")
        assert {n["Title"] for n in notes} >= {"Handover 0", "Handover 1", "Handover 2"}


def test_a_note_create_is_not_repeated_after_a_5xx(sandbox: Sandbox) -> None:
    """A 503 may come after Salesforce made the note: no blind second create."""
    with writer_for(sandbox) as writer:
        parent = account_ids(writer, 1)[0]
        sandbox.control(
            "PUT",
            "/faults",
            json={"routes": [{"match": "POST */composite/sobjects", "unavailable": 1.0}]},
        )
        op = WriteOp(key=1, kind=WriteKind.UPSERT, fields={"ParentId": parent, "Title": "Once"})
        before = writer.api_calls
        with pytest.raises(Exception, match="503"):
            writer.write("Note", [op])
        assert writer.api_calls - before == 1


def test_bulk_above_the_threshold_one_job_per_kind_matched_by_key(sandbox: Sandbox) -> None:
    with writer_for(sandbox, bulk_threshold=100) as writer:
        ids = account_ids(writer, 150)
        sandbox.control(
            "POST",
            "/faults/records",
            json={
                "crm": "salesforce",
                "object": "Account",
                "ids": [ids[7], "bulk-ext-3"],
                "kind": "validation",
                "field": "Tier__c",
            },
        )
        ops = [
            update(i, rid, Tier__c=f"tier-{i}", Health_Score__c=None if i % 3 else i)
            for i, rid in enumerate(ids)
        ]
        ops += [upsert(1000 + i, f"bulk-ext-{i}", Name=f"Bulk {i}") for i in range(120)]
        before = writer.api_calls
        results = writer.write("Account", ops)
        assert writer.api_calls - before == planned_calls(
            "salesforce", 150, 120, WriteTuning(bulk_threshold=100)
        )
        assert writer.api_calls - before == 12
        assert [r.key for r in results] == [op.key for op in ops]
        assert results[7].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        assert results[7].fields == ("Tier__c",)
        assert results[150 + 3].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        assert sum(not r.ok for r in results) == 2
        for i in (0, 1, 149):
            assert results[i].crm_id == ids[i]
        created = {r.key: r for r in results[150:] if r.ok}
        assert all(r.outcome is WriteOutcome.CREATED for r in created.values())
        rows = {
            r["Name"]: r["Id"]
            for r in query(writer, "SELECT Id, Name FROM Account WHERE Name LIKE 'Bulk %'")
        }
        assert all(created[1000 + i].crm_id == rows[f"Bulk {i}"] for i in range(120) if i != 3)
        tiers = {
            r["Id"]: r for r in query(writer, "SELECT Id, Tier__c, Health_Score__c FROM Account")
        }
        assert tiers[ids[10]]["Tier__c"] == "tier-10"
        assert tiers[ids[9]]["Health_Score__c"] == 9
        assert tiers[ids[7]]["Tier__c"] is None
    assert route_calls(sandbox, "jobs/ingest") == 12


def test_bulk_lock_failures_are_sent_again_through_collections(sandbox: Sandbox) -> None:
    with writer_for(sandbox, bulk_threshold=10) as writer:
        ids = account_ids(writer, 20)
        sandbox.control(
            "POST",
            "/faults/records",
            json={
                "crm": "salesforce",
                "object": "Account",
                "ids": ids[:2],
                "kind": "lock",
                "count": 1,
            },
        )
        before = writer.api_calls
        results = writer.write("Account", [update(i, r, Plan__c="x") for i, r in enumerate(ids)])
        assert writer.api_calls - before == 6 + 1
        assert all(r.ok for r in results)


def test_429_5xx_and_resets_are_retried_and_the_write_completes(sandbox: Sandbox) -> None:
    with writer_for(sandbox, salesforce_chunk=10) as writer:
        ids = account_ids(writer, 400)
        sandbox.control(
            "PUT",
            "/faults",
            json={
                "seed": 3,
                "routes": [
                    {
                        "match": "PATCH */composite/sobjects*",
                        "rate_limit": 0.1,
                        "unavailable": 0.05,
                        "reset": 0.05,
                    }
                ],
            },
        )
        before = writer.api_calls
        results = writer.write("Account", [update(i, r, Plan__c="f") for i, r in enumerate(ids)])
        spent = writer.api_calls - before
        assert all(r.ok for r in results)
        stats = sandbox.control("GET", "/stats")
        seen = route_calls(sandbox, "composite/sobjects")
        assert spent >= 40
        assert spent > 40  # with this seed some calls failed and were repeated
        assert stats["faults"] or stats["rate_limited"]
        # Resets never reach the emulator; everything else is one answered request each.
        assert seen <= spent
        rows = query(writer, "SELECT Id FROM Account WHERE Plan__c = 'f'")
        assert sorted(r["Id"] for r in rows) == sorted(ids)


def test_ten_percent_429s_cost_about_one_call_in_nine_more(sandbox: Sandbox) -> None:
    """Each 429 is one more request: the expected total is floor / (1 - 0.1)."""
    with writer_for(sandbox, salesforce_chunk=2) as writer:
        ids = account_ids(writer, 400)
        sandbox.control(
            "PUT",
            "/faults",
            json={"seed": 11, "routes": [{"match": "*/composite/sobjects*", "rate_limit": 0.1}]},
        )
        before = writer.api_calls
        results = writer.write("Account", [update(i, r, Plan__c="g") for i, r in enumerate(ids)])
        spent = writer.api_calls - before
        floor = planned_calls("salesforce", 400, 0, WriteTuning(salesforce_chunk=2))
        assert floor == 200
        assert all(r.ok for r in results)
        limited = sandbox.control("GET", "/stats")["rate_limited"]["salesforce"]
        refused = sum(limited.values())
        assert refused > 0
        # Exactly one extra request per 429, nothing else: floor + refusals.
        assert spent == floor + refused
        assert spent <= floor * 1.2
