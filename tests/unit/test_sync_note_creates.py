"""NoteCreateGuard's order of work, with in-memory ports: the mark is committed before the
create call, a lost create is answered from the lookup, everything else passes through."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from app.crm.writes import WriteKind, WriteOp, WriteOutcome, WriteResult
from app.mappers.notes import CrmNote
from app.sync.note_creates import NoteCreateGuard

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Journal:
    def __init__(self) -> None:
        self.events: list[str] = []


class Store:
    def __init__(self, journal: Journal, marks: Mapping[int, datetime] | None = None) -> None:
        self.journal = journal
        self.marks = dict(marks or {})
        self.held: set[str] = set()

    def pending_marks(self, keys: Collection[int]) -> Mapping[int, datetime]:
        return {k: v for k, v in self.marks.items() if k in keys}

    def mark_pending(self, keys: Collection[int], at: datetime) -> None:
        self.journal.events.append(f"mark {sorted(keys)}")
        for key in keys:
            self.marks.setdefault(key, at)

    def held_ids(self, crm_ids: Collection[str]) -> set[str]:
        return self.held & set(crm_ids)


class Lookup:
    def __init__(self, journal: Journal, notes: Sequence[CrmNote] = ()) -> None:
        self.journal = journal
        self.notes = list(notes)
        self.asked: list[tuple[list[str], datetime]] = []

    def notes_since(self, parent_ids: Collection[str], since: datetime) -> list[CrmNote]:
        self.journal.events.append("lookup")
        self.asked.append((sorted(parent_ids), since))
        return [n for n in self.notes if n.parent_id in parent_ids and n.created_at >= since]


class Writer:
    name = "salesforce"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.api_calls = 0
        self.seen: list[tuple[str, list[int]]] = []

    def write(self, object_name: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        self.journal.events.append(f"write {object_name} {[op.key for op in ops]}")
        self.api_calls += 1
        self.seen.append((object_name, [op.key for op in ops]))
        return [
            WriteResult(
                op.key,
                WriteOutcome.CREATED if op.kind is WriteKind.UPSERT else WriteOutcome.WRITTEN,
                crm_id=op.crm_id or f"002NEW{op.key}",
            )
            for op in ops
        ]


def create(key: int, title: str = "T", parent: str = "001A") -> WriteOp:
    return WriteOp(key, WriteKind.UPSERT, {"Title": title, "Body": "B", "ParentId": parent})


def update(key: int) -> WriteOp:
    return WriteOp(key, WriteKind.UPDATE, {"Title": "x"}, crm_id=f"002OLD{key}")


def guard(
    marks: Mapping[int, datetime] | None = None, notes: Sequence[CrmNote] = ()
) -> tuple[NoteCreateGuard, Journal, Store, Lookup, Writer]:
    journal = Journal()
    store, lookup, writer = Store(journal, marks), Lookup(journal, notes), Writer(journal)
    return NoteCreateGuard(writer, store, lookup, clock=lambda: T0), journal, store, lookup, writer


def test_new_creates_are_marked_before_the_call_and_nothing_is_looked_up() -> None:
    g, journal, store, _lookup, _writer = guard()
    results = g.write("Note", [create(1), update(2), create(3)])
    assert journal.events == ["mark [1, 3]", "write Note [1, 2, 3]"]
    assert [r.key for r in results] == [1, 2, 3]
    assert store.marks == {1: T0, 3: T0}


def test_a_marked_create_found_in_the_crm_is_answered_without_a_call() -> None:
    mark = T0 - timedelta(hours=1)
    found = CrmNote("002LOST", "001A", "T", "B", mark + timedelta(seconds=1))
    g, journal, _store, lookup, writer = guard({1: mark}, [found])
    results = g.write("Note", [create(1), create(2)])
    assert journal.events == ["lookup", "mark [2]", "write Note [2]"]
    assert lookup.asked == [(["001A"], (mark - timedelta(minutes=5)).replace(microsecond=0))]
    assert results == [
        WriteResult(1, WriteOutcome.CREATED, crm_id="002LOST"),
        WriteResult(2, WriteOutcome.CREATED, crm_id="002NEW2"),
    ]
    assert writer.seen == [("Note", [2])]
    assert g.recovered == 1


def test_a_marked_create_not_found_is_created_again_keeping_its_first_mark() -> None:
    mark = T0 - timedelta(hours=1)
    g, journal, store, _lookup, _writer = guard({1: mark}, [])
    [result] = g.write("Note", [create(1)])
    assert journal.events == ["lookup", "mark [1]", "write Note [1]"]
    assert result.crm_id == "002NEW1"
    assert store.marks[1] == mark


def test_a_note_another_row_holds_is_not_taken() -> None:
    found = CrmNote("002HELD", "001A", "T", "B", T0)
    g, _journal, store, _lookup, writer = guard({1: T0}, [found])
    store.held.add("002HELD")
    [result] = g.write("Note", [create(1)])
    assert result.crm_id == "002NEW1"
    assert writer.seen == [("Note", [1])]


def test_all_found_makes_no_write_call() -> None:
    found = CrmNote("002LOST", "001A", "T", "B", T0)
    g, journal, _store, _lookup, writer = guard({1: T0}, [found])
    assert [r.crm_id for r in g.write("Note", [create(1)])] == ["002LOST"]
    assert writer.seen == []
    assert journal.events == ["lookup"]


def test_other_objects_and_updates_pass_straight_through() -> None:
    g, journal, store, _lookup, writer = guard({1: T0})
    g.write("Account", [create(1)])
    g.write("Note", [update(2)])
    assert journal.events == ["write Account [1]", "write Note [2]"]
    assert store.marks == {1: T0}
    assert g.api_calls == writer.api_calls == 2
    assert g.name == "salesforce"
