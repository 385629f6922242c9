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
from typing import Any, Literal, Protocol

CrmName = Literal["salesforce", "hubspot"]

WireRecord = dict[str, Any]


@dataclass(frozen=True)
class Position:
    """Where a change stream stands: a high-water mark plus an adapter's resume token.

    ``at``/``id`` is the (modification stamp, record id) pair of the last record committed; the id
    breaks ties between records sharing one stamp. ``resume`` is adapter-specific and JSON-able
    (a Bulk job id and locator, a HubSpot search window); empty means "start from at/id".
    """

    at: datetime | None = None
    id: str | None = None
    resume: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordPage:
    """One page of a change stream, to be committed as a unit.

    ``position`` is where to resume *after* this page's rows are committed; the engine stores it
    in the same transaction as the rows, never before.
    """

    records: list[WireRecord]
    position: Position
    deleted_ids: list[str] = field(default_factory=list)
    api_calls: int = 1


class CrmClient(Protocol):
    """What the pull engine needs from a CRM."""

    name: CrmName

    @property
    def api_calls(self) -> int:
        """Calls made through this client so far (every HTTP request, retries included)."""
        ...

    def estimate_changes(self, object_name: str, since: Position | None) -> int | None:
        """How many records changed since ``since`` (None: unknown). Costs at most one call."""
        ...

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        since: Position | None,
        *,
        page_size: int,
        use_bulk: bool = False,
    ) -> Iterator[RecordPage]:
        """Records modified at or after ``since`` (minus the adapter's lookback), oldest first.

        Must never skip a record and never loop: ties on the stamp are broken by id, search caps
        are avoided by moving the lower bound forward, and ``since.resume`` continues a stream
        that was interrupted. Deleted records appear in ``deleted_ids`` where the CRM reports
        them in the same stream (Salesforce ``queryAll``).
        """
        ...

    def iter_deleted(self, object_name: str, since: Position | None) -> Iterator[RecordPage]:
        """Deleted/archived records the change stream does not show (HubSpot ``archived=true``)."""
        ...

    def close(self) -> None: ...
