"""The HubSpot search window state machine: state in, next request out. Pure, no I/O.

HubSpot search (crm-api.md B§5) sorts on one property, pages by an integer offset ``after`` and
refuses to page past 10,000 results. Airbyte's timestamp restarts looped forever when more than
10,000 records shared one ``hs_lastmodifieddate`` (airbytehq/airbyte#43317). This machine:

* **range** mode: ``hs_lastmodifieddate GTE lower`` (or ``GT`` after a tie scan) and
  ``LTE until``, sorted ``hs_lastmodifieddate ASCENDING``. The lower bound moves to the last
  stamp seen on every page and ``after`` restarts at 0 (keyset paging on the stamp), so the
  offset never approaches the cap and a record modified mid-scan (it jumps past ``until``)
  cannot shift the offsets and make us skip its neighbour. Records at the new lower stamp are
  re-read; ``seen_ids`` (the ids already emitted at that stamp) removes them again.
* **tie** mode: when a full page holds only records at the current (inclusive) lower stamp, the
  stamp alone cannot move on: scan that stamp by id instead, ``hs_lastmodifieddate EQ t`` AND
  ``hs_object_id GT last_id`` sorted ``hs_object_id ASCENDING`` (keyset, ``after`` always 0),
  until a page comes back short; then continue in range mode with ``GT t``.
* ``until`` (run start minus an index-lag margin) bounds every request, so records written
  during the run are left to the next run instead of being chased.

Progress is asserted after every page (singer-sdk raises when the next token equals the
previous one): the lower bound strictly rises, or the page emitted new records at the same
lower bound, or the tie id strictly rises; anything else raises :class:`WindowLoopError`.

Offset paging (``after``) is used only where the result set cannot shift under us: never, in
this design, which keeps the cap logic trivially satisfied (``after + limit <= cap`` always).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

STAMP = "hs_lastmodifieddate"
OBJECT_ID = "hs_object_id"

Mode = Literal["range", "tie", "done"]


class WindowLoopError(RuntimeError):
    """The next search request would repeat the previous one: a bug, not a CRM failure."""


@dataclass(frozen=True)
class SearchWindow:
    """Where a search stream stands. JSON-able via :meth:`to_json` / :meth:`from_json`."""

    mode: Mode = "range"
    lower_ms: int | None = None  # range: lower bound on the stamp (None = unbounded)
    lower_inclusive: bool = True  # range: GTE (True) or GT (False, after a tie scan)
    until_ms: int | None = None  # upper bound (LTE) on the stamp, fixed for the stream
    tie_ms: int | None = None  # tie: the stamp being scanned by id
    tie_after_id: int | None = None  # tie: last id read (None = from the start)
    seen_ids: frozenset[str] = field(default_factory=frozenset)  # emitted at lower/tie stamp

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "lower_ms": self.lower_ms,
            "lower_inclusive": self.lower_inclusive,
            "until_ms": self.until_ms,
            "tie_ms": self.tie_ms,
            "tie_after_id": self.tie_after_id,
            "seen_ids": sorted(self.seen_ids, key=_id_sort_key),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchWindow:
        mode = data.get("mode", "range")
        if mode not in ("range", "tie", "done"):
            raise ValueError(f"unknown search window mode {mode!r}")
        return cls(
            mode=mode,
            lower_ms=_opt_int(data.get("lower_ms")),
            lower_inclusive=bool(data.get("lower_inclusive", True)),
            until_ms=_opt_int(data.get("until_ms")),
            tie_ms=_opt_int(data.get("tie_ms")),
            tie_after_id=_opt_int(data.get("tie_after_id")),
            seen_ids=frozenset(str(i) for i in data.get("seen_ids") or ()),
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _id_sort_key(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (0, value)


def start(lower_ms: int | None, until_ms: int | None) -> SearchWindow:
    """A fresh stream: stamps in ``[lower_ms, until_ms]``."""
    return SearchWindow(mode="range", lower_ms=lower_ms, until_ms=until_ms)


@dataclass(frozen=True)
class SearchRequest:
    """One search call, as the body fields HubSpot expects (B§5)."""

    filters: tuple[tuple[str, str, str], ...]  # (propertyName, operator, value)
    sort_by: str
    limit: int
    after: int = 0

    def body(self, properties: Sequence[str]) -> dict[str, Any]:
        return {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": p, "operator": op, "value": v} for p, op, v in self.filters
                    ]
                }
            ],
            "sorts": [{"propertyName": self.sort_by, "direction": "ASCENDING"}],
            "properties": list(properties),
            "limit": self.limit,
            "after": str(self.after),
        }


def next_request(window: SearchWindow, limit: int) -> SearchRequest | None:
    """The request that reads the next page of ``window`` (None when the stream is done)."""
    filters: list[tuple[str, str, str]] = []
    if window.mode == "done":
        return None
    if window.mode == "tie":
        assert window.tie_ms is not None
        filters.append((STAMP, "EQ", str(window.tie_ms)))
        if window.tie_after_id is not None:
            filters.append((OBJECT_ID, "GT", str(window.tie_after_id)))
        return SearchRequest(tuple(filters), OBJECT_ID, limit)
    if window.lower_ms is not None:
        filters.append((STAMP, "GTE" if window.lower_inclusive else "GT", str(window.lower_ms)))
    if window.until_ms is not None:
        filters.append((STAMP, "LTE", str(window.until_ms)))
    return SearchRequest(tuple(filters), STAMP, limit)


@dataclass(frozen=True)
class PageOutcome:
    """What :func:`advance` decided for one page."""

    window: SearchWindow  # the state after this page (mode "done" when finished)
    fresh: tuple[int, ...]  # indexes of the page's results to emit (re-reads removed)


def advance(
    window: SearchWindow,
    results: Sequence[tuple[int, str]],
    *,
    has_more: bool,
) -> PageOutcome:
    """Fold one page of ``(stamp_ms, id)`` results (in response order) into the window.

    ``has_more`` is whether HubSpot offered a next page (``paging.next``). Raises
    :class:`WindowLoopError` if the next request would equal this one without progress.
    """
    if window.mode == "done":
        raise WindowLoopError("advance() called on a finished search window")
    fresh = tuple(i for i, (_, rid) in enumerate(results) if rid not in window.seen_ids)

    if window.mode == "tie":
        assert window.tie_ms is not None
        if not results or not has_more:
            # The stamp is exhausted: continue strictly after it.
            new = SearchWindow(
                mode="range",
                lower_ms=window.tie_ms,
                lower_inclusive=False,
                until_ms=window.until_ms,
            )
            return PageOutcome(new, fresh)
        last_id = max(int(rid) for _, rid in results)
        if window.tie_after_id is not None and last_id <= window.tie_after_id:
            raise WindowLoopError(
                f"tie scan at {window.tie_ms} did not advance past id {window.tie_after_id}"
            )
        return PageOutcome(replace(window, tie_after_id=last_id), fresh)

    # range mode
    if not results or not has_more:
        return PageOutcome(replace(window, mode="done", seen_ids=frozenset()), fresh)
    last_ms = max(ms for ms, _ in results)
    at_last = frozenset(rid for ms, rid in results if ms == last_ms)
    if window.lower_ms is None or last_ms > window.lower_ms:
        # The lower bound moves up to the last stamp; its records are re-read next time.
        new = replace(window, lower_ms=last_ms, lower_inclusive=True, seen_ids=at_last)
        return PageOutcome(new, fresh)
    if last_ms < window.lower_ms or (last_ms == window.lower_ms and not window.lower_inclusive):
        raise WindowLoopError(
            f"search returned stamp {last_ms} outside its lower bound {window.lower_ms}"
        )
    # last_ms == lower_ms (inclusive): every record on the page shares the lower stamp, so
    # the stamp alone cannot move on. Scan it by id; records already emitted at it stay
    # filtered by seen_ids (bounded: at most two pages' worth of ids).
    new = SearchWindow(
        mode="tie",
        tie_ms=last_ms,
        tie_after_id=None,
        until_ms=window.until_ms,
        seen_ids=window.seen_ids | at_last,
    )
    return PageOutcome(new, fresh)
