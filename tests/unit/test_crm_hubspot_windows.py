"""The HubSpot search window state machine, against an in-memory model of HubSpot search.

The fake search applies the request's filters, sorts on the one sort property with ties in a
random (seeded) order, as HubSpot leaves them unspecified, pages by ``after``/``limit`` and
refuses to page past the 10,000-result cap, as HubSpot does.
"""

from __future__ import annotations

import json
import operator
import random
from collections import Counter
from collections.abc import Callable

import pytest

from app.crm.hubspot import windows
from app.crm.hubspot.windows import SearchRequest, SearchWindow, WindowLoopError

CAP = 10_000
Record = tuple[int, str]  # (stamp ms, id)


OPS: dict[str, Callable[[int, int], bool]] = {
    "EQ": operator.eq,
    "GT": operator.gt,
    "GTE": operator.ge,
    "LT": operator.lt,
    "LTE": operator.le,
}


class FakeSearch:
    def __init__(self, records: list[Record], seed: int = 0, cap: int = CAP) -> None:
        self.records = records
        self.rng = random.Random(seed)
        self.cap = cap
        self.requests = 0

    def __call__(self, req: SearchRequest) -> tuple[list[Record], bool]:
        self.requests += 1
        assert req.after + req.limit <= self.cap, "paged past the search cap"
        rows = list(self.records)
        for prop, op, value in req.filters:
            idx = 0 if prop == windows.STAMP else 1
            rows = [r for r in rows if OPS[op](int(r[idx]), int(value))]
        self.rng.shuffle(rows)  # ties in unspecified order
        if req.sort_by == windows.STAMP:
            rows.sort(key=lambda r: r[0])
        else:
            rows.sort(key=lambda r: int(r[1]))
        page = rows[req.after : req.after + req.limit]
        return page, req.after + req.limit < len(rows)


def drain(
    search: FakeSearch,
    window: SearchWindow,
    limit: int = 200,
    *,
    on_page: Callable[[int], None] | None = None,
    roundtrip: bool = False,
    max_pages: int = 10_000,
) -> list[str]:
    emitted: list[str] = []
    for n in range(max_pages):
        req = windows.next_request(window, limit)
        if req is None:
            return emitted
        page, has_more = search(req)
        outcome = windows.advance(window, page, has_more=has_more)
        emitted.extend(page[i][1] for i in outcome.fresh)
        window = outcome.window
        if roundtrip:
            window = SearchWindow.from_json(json.loads(json.dumps(window.to_json())))
        if on_page is not None:
            on_page(n)
    raise AssertionError("did not finish: looping?")


def ids(n: int, start: int = 1) -> list[str]:
    return [str(i) for i in range(start, start + n)]


def assert_exactly_once(emitted: list[str], expected: set[str]) -> None:
    counts = Counter(emitted)
    dupes = {k: c for k, c in counts.items() if c > 1}
    assert not dupes, f"emitted more than once: {list(dupes)[:5]}"
    assert set(emitted) == expected


def test_empty() -> None:
    search = FakeSearch([])
    assert drain(search, windows.start(None, None)) == []
    assert search.requests == 1


def test_distinct_stamps_in_order() -> None:
    records = [(1000 + i, s) for i, s in enumerate(ids(1_000))]
    search = FakeSearch(records)
    emitted = drain(search, windows.start(None, None))
    assert emitted == ids(1_000)  # oldest first
    assert search.requests <= 7  # ~1,000/199 pages: re-reading one record per page


def test_bounds_respected() -> None:
    records = [(i, str(i)) for i in range(1, 101)]
    emitted = drain(FakeSearch(records), windows.start(10, 50))
    assert_exactly_once(emitted, {str(i) for i in range(10, 51)})


def test_more_than_a_page_sharing_a_stamp_across_page_boundary() -> None:
    # 150 records before, 250 sharing one stamp, 150 after: the tie straddles pages.
    records = [(1000 + i, s) for i, s in enumerate(ids(150))]
    records += [(5000, s) for s in ids(250, 1000)]
    records += [(9000 + i, s) for i, s in enumerate(ids(150, 5000))]
    for seed in range(5):
        emitted = drain(FakeSearch(records, seed=seed), windows.start(None, None))
        assert_exactly_once(emitted, {r[1] for r in records})


@pytest.mark.parametrize("tie", [150, 199, 200, 201, 399, 5_000])
def test_ties_of_various_sizes(tie: int) -> None:
    records = [(100, s) for s in ids(50)] + [(200, s) for s in ids(tie, 100)]
    records += [(300, s) for s in ids(50, 100_000)]
    emitted = drain(FakeSearch(records, seed=tie), windows.start(None, None))
    assert_exactly_once(emitted, {r[1] for r in records})


def test_more_than_the_cap_sharing_one_stamp_never_loops() -> None:
    # airbytehq/airbyte#43317: > 10,000 records with one hs_lastmodifieddate.
    records = [(7000, s) for s in ids(10_500)] + [(8000, s) for s in ids(10, 50_000)]
    search = FakeSearch(records, seed=3)
    emitted = drain(search, windows.start(6000, 9000))
    assert_exactly_once(emitted, {r[1] for r in records})
    assert search.requests < 60  # 10,510 / 200 + the restart


def test_more_than_the_cap_with_distinct_stamps() -> None:
    records = [(i // 3, str(i)) for i in range(1, 10_600)]  # 3 per stamp
    search = FakeSearch(records, seed=9)
    emitted = drain(search, windows.start(None, None))
    assert_exactly_once(emitted, {r[1] for r in records})


def test_resume_from_json_midway_continues_exactly() -> None:
    records = [(100, s) for s in ids(450)] + [(100 + i, s) for i, s in enumerate(ids(300, 1000))]
    emitted = drain(FakeSearch(records, seed=1), windows.start(None, None), roundtrip=True)
    assert_exactly_once(emitted, {r[1] for r in records})


def test_record_modified_mid_scan_does_not_hide_its_neighbours() -> None:
    # A record read on page 1 is modified (its stamp jumps past `until`) before page 2:
    # with offset paging the next record would be skipped; keyset paging must not skip it.
    records = [(1000 + i, s) for i, s in enumerate(ids(600))]
    search = FakeSearch(records)

    def modify(page: int) -> None:
        if page == 0:
            search.records[10] = (999_999, search.records[10][1])

    emitted = drain(search, windows.start(None, 5000), on_page=modify)
    assert_exactly_once(emitted, {r[1] for r in records})


def test_requests_use_the_expected_filters() -> None:
    w = windows.start(100, 900)
    req = windows.next_request(w, 200)
    assert req is not None
    body = req.body(["name"])
    assert body["filterGroups"][0]["filters"] == [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "100"},
        {"propertyName": "hs_lastmodifieddate", "operator": "LTE", "value": "900"},
    ]
    assert body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert body["limit"] == 200
    assert body["after"] == "0"

    tie = SearchWindow(mode="tie", tie_ms=500, tie_after_id=42, until_ms=900)
    req = windows.next_request(tie, 200)
    assert req is not None
    assert req.filters == (("hs_lastmodifieddate", "EQ", "500"), ("hs_object_id", "GT", "42"))
    assert req.sort_by == "hs_object_id"


def test_full_page_at_lower_stamp_switches_to_tie_scan() -> None:
    w = SearchWindow(lower_ms=500, until_ms=900)
    page = [(500, str(i)) for i in range(200)]
    out = windows.advance(w, page, has_more=True)
    assert out.window.mode == "tie"
    assert out.window.tie_ms == 500
    assert len(out.fresh) == 200


def test_tie_exhausted_continues_strictly_after_the_stamp() -> None:
    w = SearchWindow(mode="tie", tie_ms=500, tie_after_id=10, until_ms=900)
    out = windows.advance(w, [(500, "11")], has_more=False)
    assert out.window.mode == "range"
    assert (out.window.lower_ms, out.window.lower_inclusive) == (500, False)
    req = windows.next_request(out.window, 200)
    assert req is not None
    assert req.filters[0] == ("hs_lastmodifieddate", "GT", "500")


def test_tie_scan_that_does_not_advance_raises() -> None:
    w = SearchWindow(mode="tie", tie_ms=500, tie_after_id=10)
    with pytest.raises(WindowLoopError):
        windows.advance(w, [(500, "3"), (500, "10")], has_more=True)


def test_results_below_lower_bound_raise() -> None:
    w = SearchWindow(lower_ms=500, lower_inclusive=False)
    with pytest.raises(WindowLoopError):
        windows.advance(w, [(500, "1")], has_more=True)


def test_done_window() -> None:
    w = SearchWindow(lower_ms=1)
    out = windows.advance(w, [(2, "1")], has_more=False)
    assert out.window.mode == "done"
    assert windows.next_request(out.window, 200) is None
    with pytest.raises(WindowLoopError):
        windows.advance(out.window, [], has_more=False)


def test_json_roundtrip() -> None:
    w = SearchWindow(
        mode="tie",
        lower_ms=1,
        until_ms=9,
        tie_ms=5,
        tie_after_id=7,
        seen_ids=frozenset({"3", "12"}),
    )
    data = json.loads(json.dumps(w.to_json()))
    assert data["seen_ids"] == ["3", "12"]
    assert SearchWindow.from_json(data) == w
    with pytest.raises(ValueError, match="mode"):
        SearchWindow.from_json({"mode": "bogus"})
