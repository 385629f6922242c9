"""The interface between the sync engine and a CRM: what a pull needs, in CRM-neutral terms.

Adapters (``app.crm.salesforce``, ``app.crm.hubspot``) implement :class:`CrmClient` with the real
client libraries; the engine (``app.sync``) sees only these types. CRM wire names
(``SystemModstamp``, ``hs_lastmodifieddate``) stay inside the adapters and ``app.mappers``.

Records cross this boundary as :data:`WireRecord`: the CRM's own field names and JSON-ish values,
flattened (Salesforce: the record minus ``attributes``; HubSpot: ``id``, ``archived`` and the
``properties`` at the top level, plus association lists under ``associations.<type>``). Values
may be strings even for numbers (Bulk CSV, HubSpot): mappers convert.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.core.types import CrmName, WireRecord

__all__ = ["CrmClient", "CrmName", "ReadFrom", "RecordPage", "StreamKey", "WireRecord"]


StreamKey = tuple[datetime, str]
"""(modification stamp, record id) of one record: its place in a change stream."""


def id_order(record_id: str) -> tuple[int, str]:
    """Sort key of a record id in stream order, the same for every CRM: shorter first, then
    character by character (code point order).

    That is the order both CRMs page in. HubSpot sorts ``hs_object_id`` as a number; its ids are
    digit strings without leading zeros, so "shorter first" is numeric order ("9" < "10").
    Salesforce ``ORDER BY Id`` compares ids case-sensitively (SOQL sorts text case-insensitively,
    ids excepted); they all have one length (15, or 18 from the API), so it is plain character
    order. Comparing ids as plain strings (as one adapter did) puts "10" before "9".
    """
    return (len(record_id), record_id)


def key_order(key: StreamKey) -> tuple[datetime, tuple[int, str]]:
    """Sort key of a (stamp, id) pair; stamps must be timezone-aware."""
    return (key[0], id_order(key[1]))


@dataclass(frozen=True)
class ReadFrom:
    """Where the engine asks a change stream to be read from; computed by the engine
    (:func:`app.sync.cursor.read_from`), which alone applies the lookback and keeps a cursor
    from moving backwards. Adapters only page.

    ``lower``: inclusive lower bound on the modification stamp (None: everything).
    ``after``: the (stamp, id) of the last record committed, if any: a stream restarted
    mid-way (an expired query locator) continues strictly after it.
    ``resume``: the adapter's own token from the last committed page (a query locator, a Bulk
    job and locator, a HubSpot search window); empty: start at ``lower``.
    ``upper``: exclusive upper bound on the stamp (None: none), a whole second; set for a
    partition of a partitioned backfill (:mod:`app.sync.partitions`), which reads only
    ``lower <= stamp < upper``.
    """

    lower: datetime | None = None
    after: StreamKey | None = None
    resume: Mapping[str, Any] = field(default_factory=dict)
    upper: datetime | None = None


@dataclass(frozen=True)
class RecordPage:
    """One page of a change stream, to be committed as a unit.

    ``last`` is the (stamp, id) of the newest record the stream has read up to and including
    this page, or None when the page does not say (no row yet, or Bulk rows, which come
    unordered, before the job's last page). ``resume`` is how to continue after this page. The
    engine stores both in the same transaction as the rows, never before, and never lets the
    stored mark move backwards.
    """

    records: list[WireRecord]
    last: StreamKey | None = None
    resume: Mapping[str, Any] = field(default_factory=dict)
    deleted_ids: list[str] = field(default_factory=list)
    #: How many rows the stream holds, where the CRM said so with this page (the first page of
    #: a REST query or search): the count folded into the first page instead of a call of its own.
    expected: int | None = None
    #: True when the page came from a bulk export (Salesforce Bulk API 2.0).
    bulk: bool = False


class CrmClient(Protocol):
    """What the pull engine needs from a CRM."""

    name: CrmName

    @property
    def api_calls(self) -> int:
        """Calls made through this client so far (every HTTP request, retries included)."""
        ...

    def estimate_changes(self, object_name: str, start: ReadFrom | None) -> int | None:
        """How many records changed at or after ``start.lower`` and before ``start.upper``
        (None: unknown). At most one call."""
        ...

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        """Records modified at or after ``start.lower`` and before ``start.upper`` (``start``
        None: all), oldest first (stamp, then :func:`id_order`).

        ``use_bulk`` None lets the adapter choose: Salesforce reads the first REST page and
        switches to Bulk API 2.0 when its ``totalSize`` is above the configured threshold, so
        the count costs no call of its own; pages report ``bulk`` and ``expected``.

        Must never skip a record and never loop: ties on the stamp are broken by id, search caps
        are avoided by moving the lower bound forward, and ``start.resume`` continues a stream
        that was interrupted. Deleted records appear in ``deleted_ids`` where the CRM reports
        them in the same stream (Salesforce ``queryAll``).
        """
        ...

    def iter_deleted(self, object_name: str, start: ReadFrom | None) -> Iterator[RecordPage]:
        """Deleted/archived records the change stream does not show (HubSpot ``archived=true``)."""
        ...

    def close(self) -> None: ...
