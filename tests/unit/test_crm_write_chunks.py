"""Chunking, halving and per-record retries of the writers (app.crm.write_chunks): pure."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from math import ceil

import pytest

from app.crm.salesforce.writer import csv_value, json_value, parse_bulk_error
from app.crm.write_chunks import (
    NO_RESULT,
    ChunkRefused,
    RetryRounds,
    plan_chunks,
    send_split,
    write_with_retries,
)
from app.crm.writes import WriteOutcome, WriteResult, WriteTuning, planned_calls


@pytest.mark.parametrize(
    ("keys", "size", "expected"),
    [
        ([], 3, []),
        (["a"], 3, [[0]]),
        (["a", "b", "c"], 3, [[0, 1, 2]]),
        (["a", "b", "c", "d"], 3, [[0, 1, 2], [3]]),
        # a repeated key goes to a later call, after the first occurrences
        (["a", "b", "a"], 3, [[0, 1], [2]]),
        (["a", "a", "a"], 100, [[0], [1], [2]]),
        (["a", "b", "a", "c", "b"], 2, [[0, 1], [3], [2, 4]]),
    ],
)
def test_plan_chunks(keys: list[str], size: int, expected: list[list[int]]) -> None:
    assert plan_chunks(keys, size) == expected


@pytest.mark.parametrize(("n", "size"), [(1, 200), (200, 200), (201, 200), (450, 200), (999, 100)])
def test_plan_chunks_without_duplicates_is_the_planned_count(n: int, size: int) -> None:
    chunks = plan_chunks([str(i) for i in range(n)], size)
    assert len(chunks) == ceil(n / size)
    assert [i for c in chunks for i in c] == list(range(n))
    assert all(len(c) <= size for c in chunks)


def test_plan_chunks_refuses_size_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_chunks(["a"], 0)


@pytest.mark.parametrize(
    ("crm", "updates", "upserts", "tuning", "calls"),
    [
        ("salesforce", 0, 0, WriteTuning(), 0),
        ("salesforce", 450, 0, WriteTuning(), 3),
        ("salesforce", 150, 60, WriteTuning(), 2),
        ("salesforce", 2000, 0, WriteTuning(), 10),
        ("salesforce", 2001, 0, WriteTuning(), 6),
        ("salesforce", 1500, 501, WriteTuning(), 12),
        ("hubspot", 250, 1, WriteTuning(), 4),
    ],
)
def test_planned_calls_table(
    crm: str, updates: int, upserts: int, tuning: WriteTuning, calls: int
) -> None:
    assert planned_calls(crm, updates, upserts, tuning) == calls  # type: ignore[arg-type]


def ok(key: int) -> WriteResult:
    return WriteResult(key=key, outcome=WriteOutcome.WRITTEN, crm_id=f"id{key}")


class FakeCrm:
    """Refuses any call holding a ``bad`` index as a whole; locks ``locked`` for n sends."""

    def __init__(self, bad: set[int] = frozenset(), locked: Mapping[int, int] | None = None):  # type: ignore[assignment]
        self.bad = set(bad)
        self.locked = dict(locked or {})
        self.calls: list[list[int]] = []

    def send(self, chunk: list[int]) -> dict[int, WriteResult]:
        self.calls.append(list(chunk))
        if self.bad & set(chunk):
            raise ChunkRefused("INVALID_INPUT", "one input is bad", ("name",))
        out: dict[int, WriteResult] = {}
        for i in chunk:
            if self.locked.get(i, 0) > 0:
                self.locked[i] -= 1
                out[i] = WriteResult(
                    key=i, outcome=WriteOutcome.FAILED, code="UNABLE_TO_LOCK_ROW", retriable=True
                )
            else:
                out[i] = ok(i)
        return out


@pytest.mark.parametrize(
    ("n", "bad", "calls"),
    [
        (8, set(), 1),
        (1, {0}, 1),
        (2, {1}, 3),  # [0,1] -> [0] [1]
        (8, {5}, 7),  # 8 -> 4+4 -> (2+2) -> (1+1): 1 + 2 + 2 + 2
        (8, {0, 7}, 11),  # 1 + 2 halves + (2 quarters + 2 singles) per half
    ],
)
def test_send_split_isolates_the_refused_record(n: int, bad: set[int], calls: int) -> None:
    crm = FakeCrm(bad)
    keys = list(range(100, 100 + n))
    results = send_split(list(range(n)), crm.send, keys)
    assert len(crm.calls) == calls
    assert sorted(results) == list(range(n))
    for i, result in results.items():
        if i in bad:
            assert result.outcome is WriteOutcome.FAILED
            assert (result.key, result.code, result.fields) == (keys[i], "INVALID_INPUT", ("name",))
        else:
            assert result.ok


def test_send_split_reports_a_missing_result() -> None:
    results = send_split([0, 1], lambda chunk: {0: ok(0)}, [10, 11])
    assert results[0].ok
    assert (results[1].key, results[1].code, results[1].retriable) == (11, NO_RESULT, True)


def rounds(attempts: int, waits: list[float]) -> RetryRounds:
    return RetryRounds(
        attempts=attempts,
        wait=lambda n: float(n),
        sleep=waits.append,
        retry_codes=frozenset({"UNABLE_TO_LOCK_ROW"}),
    )


def test_locked_records_are_sent_again_together_after_a_backoff() -> None:
    crm = FakeCrm(locked={1: 1, 4: 2})
    waits: list[float] = []
    results = write_with_retries(
        range(5), [str(i) for i in range(5)], 2, crm.send, list(range(5)), rounds(7, waits)
    )
    assert crm.calls == [[0, 1], [2, 3], [4], [1, 4], [4]]
    assert waits == [1.0, 2.0]
    assert all(r.ok for r in results.values())


def test_a_lock_outlasting_the_attempts_stays_failed_and_retriable() -> None:
    crm = FakeCrm(locked={0: 99})
    waits: list[float] = []
    results = write_with_retries([0, 1], ["a", "b"], 10, crm.send, [0, 1], rounds(3, waits))
    assert len(crm.calls) == 3
    assert results[0].code == "UNABLE_TO_LOCK_ROW"
    assert results[0].retriable
    assert results[1].ok


def test_first_round_can_be_replaced_and_retries_go_through_send() -> None:
    crm = FakeCrm()

    def bulk(todo: list[int]) -> dict[int, WriteResult]:
        return {
            i: ok(i)
            if i
            else WriteResult(
                key=i, outcome=WriteOutcome.FAILED, code="UNABLE_TO_LOCK_ROW", retriable=True
            )
            for i in todo
        }

    results = write_with_retries(
        [0, 1, 2], ["a", "b", "c"], 200, crm.send, [0, 1, 2], rounds(7, []), first=bulk
    )
    assert crm.calls == [[0]]
    assert all(r.ok for r in results.values())


def test_other_failures_are_not_retried() -> None:
    calls: list[list[int]] = []

    def send(chunk: list[int]) -> dict[int, WriteResult]:
        calls.append(chunk)
        return {
            i: WriteResult(
                key=i, outcome=WriteOutcome.FAILED, code="FIELD_CUSTOM_VALIDATION_EXCEPTION"
            )
            for i in chunk
        }

    results = write_with_retries([0], ["a"], 10, send, [0], rounds(7, []))
    assert calls == [[0]]
    assert results[0].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
            ("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ("Name",)),
        ),
        (
            "FIELD_CUSTOM_VALIDATION_EXCEPTION:Tier is wrong:Tier__c --",
            ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Tier is wrong", ("Tier__c",)),
        ),
        (
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access: --",
            ("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access", ()),
        ),
        ("WEIRD", ("WEIRD", "", ())),
    ],
)
def test_parse_bulk_error(text: str, expected: tuple[str, str, tuple[str, ...]]) -> None:
    assert parse_bulk_error(text) == expected


@pytest.mark.parametrize(
    ("value", "as_json", "as_csv"),
    [
        (None, None, "#N/A"),
        (True, True, "true"),
        (Decimal("12.50"), 12.5, "12.5"),
        (Decimal("3"), 3, "3"),
        ("x", "x", "x"),
    ],
)
def test_wire_values(value: object, as_json: object, as_csv: str) -> None:
    assert json_value(value) == as_json
    assert csv_value(value) == as_csv
