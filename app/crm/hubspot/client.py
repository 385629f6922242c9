"""HubSpot adapter: :class:`HubSpotClient` implements :class:`app.crm.base.CrmClient`.

Built on hubspot-api-client (crm-api.md B§1): ``HubSpot(access_token, host, ssl_ca_cert)``; the
API objects are cached (every attribute access builds a new ``Configuration`` and urllib3
pool) and every call passes ``_request_timeout`` (the library has none by default).

Authentication (B§2, B§2.1): a private app's token as it is, or an OAuth app's access token
from :class:`~app.crm.hubspot.auth.HubSpotTokenFetcher`, renewed 5 minutes before its 30
minutes are up and once more on a 401 (then the call is repeated once); a renewed token is set
on every cached API object's configuration, which the library reads on each request.

* Changes: CRM search on ``hs_lastmodifieddate`` driven by the pure window state machine in
  :mod:`app.crm.hubspot.windows` (keyset on the stamp, tie scan by ``hs_object_id`` when a full
  page shares one stamp, upper bound ``until``). Each page's ``last`` = the newest emitted
  (stamp, id); ``resume`` = the window state, so an interrupted stream continues exactly.
* The lower bound is the engine's (``start.lower``, the cursor minus its lookback). ``until`` =
  run start minus :data:`INDEX_LAG_MARGIN`: HubSpot's search index trails writes (10-60 s,
  B§5), and records written during the run are left to the next run, whose lower bound
  re-reads that overlap.
* Associations (deal -> company, note -> company/deal) are read with ONE v4 batch read per
  1,000 records and association type (``POST /crm/v4/associations/{from}/{to}/batch/read``,
  HubSpot's largest input since February 2025) and merged into the records as
  ``associations.<type>``: lists of ids. Search pages wait for that read, then go out one by one.
* Deletes: search never returns archived records, so :meth:`iter_deleted` lists
  ``archived=true`` (100 per page) and reports those with ``archivedAt`` at or after
  ``start.lower``.

Reads pass ``_preload_content=False`` (the library's own option) and decode the JSON body as
plain dicts: the generated models parse every ``createdAt``/``updatedAt`` with dateutil, which
was about 45% of a HubSpot backfill's CPU. Errors still come back as the library's
``ApiException`` and are classified as before.

Every HTTP request (retries included) counts in :attr:`api_calls`; rate-limit headers feed
:attr:`budget`. This module must not import ``app.sync``/``app.db``/``crmsync_sandbox``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hubspot import HubSpot

from app.crm import usage
from app.crm.base import CrmName, ReadFrom, RecordPage, StreamKey, WireRecord, key_order
from app.crm.budget import ApiBudget
from app.crm.hubspot import windows
from app.crm.hubspot.auth import REFRESH_MARGIN, HubSpotToken, HubSpotTokenFetcher, refresh_due
from app.crm.hubspot.errors import classify_hubspot
from app.crm.retry import RetryPolicy, call_with_retry
from app.errors import AuthError, ConfigError, Endpoint
from app.logging import get_logger
from app.settings import Settings

T = TypeVar("T")

CRM = "hubspot"
log = get_logger(__name__)
INDEX_LAG_MARGIN = timedelta(seconds=2)
ARCHIVED_PAGE_SIZE = 100
MAX_SEARCH_LIMIT = 200
#: Inputs of one v4 association batch read: HubSpot's maximum since February 2025 (B§6).
ASSOCIATION_BATCH = 1000

# Object type -> association types merged into its records (B§6).
ASSOCIATIONS: dict[str, tuple[str, ...]] = {
    "companies": (),
    "deals": ("companies",),
    "notes": ("companies", "deals"),
}


def to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}; pass a timezone-aware value")
    return int(value.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_stamp(value: Any) -> int:
    """``hs_lastmodifieddate`` as ms: ISO-8601 (``2024-03-02T08:15:30.123Z``) or ms digits."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return to_ms(parsed)


def _next_after(response: Mapping[str, Any]) -> str | None:
    after = ((response.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after else None


class HubSpotClient:
    """HubSpot through hubspot-api-client, with window search, retries and call counting."""

    #: True for a run's own client: its run counts its calls (:mod:`app.crm.usage`).
    metered_by_run: bool = False
    name: CrmName = "hubspot"

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        index_lag_margin: timedelta = INDEX_LAG_MARGIN,
    ) -> None:
        mode = settings.hubspot_auth_mode
        if mode is None:
            raise AuthError(
                "HubSpot is not configured: set CRMSYNC_HUBSPOT_ACCESS_TOKEN (private app) or "
                "CRMSYNC_HUBSPOT_CLIENT_ID, CRMSYNC_HUBSPOT_CLIENT_SECRET and "
                "CRMSYNC_HUBSPOT_REFRESH_TOKEN (OAuth app)",
                crm=CRM,
            )
        self.settings = settings
        self._policy = policy or RetryPolicy.from_settings(settings.sync, sleep=sleep)
        self._clock = clock
        self._margin = index_lag_margin
        timeout = settings.sync.request_timeout_seconds
        self._timeout = (min(10.0, timeout), timeout)
        self._calls = 0
        self.budget = ApiBudget()
        # OAuth app: tokens come from the fetcher; private app: the configured token.
        self._fetcher = HubSpotTokenFetcher(settings) if mode == "oauth" else None
        self._token: HubSpotToken | None = None
        kwargs: dict[str, Any] = {"host": settings.hubspot_base_url}
        if self._fetcher is None:
            assert settings.hubspot_access_token is not None
            kwargs["access_token"] = settings.hubspot_access_token.get_secret_value()
        if settings.ca_bundle is not None:
            kwargs["ssl_ca_cert"] = str(settings.ca_bundle)
        self._hs = HubSpot(**kwargs)
        self._endpoint = (
            self._fetcher.endpoint
            if self._fetcher is not None
            else Endpoint(
                url=settings.hubspot_base_url,
                url_setting="CRMSYNC_HUBSPOT_BASE_URL",
                credential_setting="CRMSYNC_HUBSPOT_ACCESS_TOKEN",
                ca_bundle=kwargs.get("ssl_ca_cert"),
            )
        )
        self._apis: dict[tuple[str, str], Any] = {}

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def api_calls(self) -> int:
        return self._calls

    def _count(self) -> None:
        self._calls += 1
        if not self.metered_by_run:  # a run counts its own client's calls (app.crm.usage)
            usage.count(self.name)

    def _api(self, object_name: str, kind: str) -> Any:
        """Cached ``search_api`` / ``basic_api`` of an object type (one pool each)."""
        key = (object_name, kind)
        if key not in self._apis:
            crm = self._hs.crm
            if object_name in ("companies", "deals", "contacts"):
                module = getattr(crm, object_name)
            elif object_name == "notes":
                module = crm.objects.notes
            else:
                raise ConfigError(
                    f"unsupported HubSpot object {object_name!r}; use companies, deals or notes",
                    crm=CRM,
                    object_name=object_name,
                )
            self._apis[key] = getattr(module, kind)
        return self._apis[key]

    def _assoc_batch_api(self) -> Any:
        key = ("associations", "v4_batch")
        if key not in self._apis:
            self._apis[key] = self._hs.crm.associations.v4.batch_api
        return self._apis[key]

    def _refresh_token(self) -> None:
        """One token request (counted), then the new token on every cached API object."""
        assert self._fetcher is not None
        self._count()
        self._token = self._fetcher.fetch()
        value = self._token.access_token
        self._hs.access_token = value  # API objects created from now on
        for api in self._apis.values():
            configuration = getattr(getattr(api, "api_client", None), "configuration", None)
            if configuration is not None:
                configuration.access_token = value

    def _fresh_token(self) -> None:
        """OAuth app: a token with more than :data:`REFRESH_MARGIN` to live, before each call."""
        if self._fetcher is not None and refresh_due(self._token, self._clock(), REFRESH_MARGIN):
            self._refresh_token()

    def _call(
        self, operation: str, fn: Callable[[], Any], object_name: str | None
    ) -> dict[str, Any]:
        """Run a raw (``_preload_content=False``) call under the retry policy; returns its JSON."""

        def send() -> Any:
            self._fresh_token()
            try:
                return fn()
            except Exception as exc:
                # An OAuth token HubSpot no longer accepts (revoked, clock skew): one new token
                # and one repeat; a second 401 is classified as usual (auth, exit 2).
                if self._fetcher is None or classify_hubspot(exc).status != 401:
                    raise
            log.warning("hubspot rejected the OAuth access token (401); refreshing it once")
            self._refresh_token()
            self._count()
            return fn()

        def attempt() -> dict[str, Any]:
            response = send()  # a raw urllib3 response: the call passed _preload_content=False
            try:
                body = response.data
            finally:
                response.release_conn()
            self.budget.update_hubspot(response.headers)
            decoded: dict[str, Any] = json.loads(body) if body else {}
            return decoded

        return call_with_retry(
            attempt,
            classify=classify_hubspot,
            policy=self._policy,
            crm=CRM,
            operation=operation,
            object_name=object_name,
            on_attempt=self._count,
            endpoint=self._endpoint,
        )

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
        for api in self._apis.values():
            pool = getattr(
                getattr(getattr(api, "api_client", None), "rest_client", None), "pool_manager", None
            )
            if pool is not None:
                pool.clear()
        self._apis.clear()

    def __enter__(self) -> HubSpotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- search ------------------------------------------------------------------------------

    def _search(self, object_name: str, body: dict[str, Any]) -> dict[str, Any]:
        api = self._api(object_name, "search_api")
        return self._call(
            "search",
            lambda: api.do_search(
                public_object_search_request=body,
                _request_timeout=self._timeout,
                _preload_content=False,
            ),
            object_name,
        )

    def _bounds(self, start: ReadFrom) -> tuple[int | None, int]:
        """(lower, until) in ms, both inclusive; an exclusive ``start.upper`` (a partition)
        ends the window one millisecond before it (HubSpot stamps are whole milliseconds)."""
        lower = to_ms(start.lower) if start.lower is not None else None
        until = to_ms(self._clock() - self._margin)
        if start.upper is not None:
            until = min(until, to_ms(start.upper) - 1)
        return lower, until

    def estimate_changes(self, object_name: str, start: ReadFrom | None) -> int | None:
        start = start or ReadFrom()
        lower, until = self._bounds(start)
        request = windows.next_request(windows.start(lower, until), 1)
        assert request is not None
        response = self._search(object_name, request.body([windows.OBJECT_ID]))
        total = response.get("total")
        return int(total) if total is not None else None

    def iter_changes(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
        use_bulk: bool | None = None,
    ) -> Iterator[RecordPage]:
        """Search pages, oldest first; ``use_bulk`` is ignored (HubSpot has no bulk export).

        Associations are read for :data:`ASSOCIATION_BATCH` records at once (one v4 batch read
        per association type), so search pages are held back until that many records are
        read or the stream ends, then yielded one by one, each with its own ``last`` and
        ``resume``: a pass stopped between them resumes at the last one committed. The first
        page reports the search's ``total`` as the expected row count (no count call).
        """
        for batch in self._search_pages(object_name, fields, start, page_size=page_size):
            self._merge_associations(object_name, [r for page in batch for r in page.records])
            yield from batch

    def _search_pages(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom | None,
        *,
        page_size: int,
    ) -> Iterator[list[RecordPage]]:
        """Search pages without their associations, grouped up to ASSOCIATION_BATCH records."""
        start = start or ReadFrom()
        limit = max(1, min(MAX_SEARCH_LIMIT, page_size))
        group = ASSOCIATION_BATCH if ASSOCIATIONS.get(object_name) else 1
        if start.resume.get("window"):
            window = windows.SearchWindow.from_json(start.resume["window"])
        else:
            window = windows.start(*self._bounds(start))
        properties = list(dict.fromkeys([*fields, windows.STAMP, windows.OBJECT_ID]))
        last: StreamKey | None = None
        previous: windows.SearchRequest | None = None
        held: list[RecordPage] = []
        first = True
        while True:
            request = windows.next_request(window, limit)
            if request is None:
                break
            if request == previous:
                raise windows.WindowLoopError(f"search request repeated: {request}")
            previous = request
            response = self._search(object_name, request.body(properties))
            results = list(response.get("results") or [])
            keyed = [(parse_stamp(self._stamp_of(r)), str(r["id"])) for r in results]
            outcome = windows.advance(window, keyed, has_more=_next_after(response) is not None)
            records = [self._wire(results[i]) for i in outcome.fresh]
            for i in outcome.fresh:
                key = (from_ms(keyed[i][0]), keyed[i][1])
                if last is None or key_order(key) > key_order(last):
                    last = key
            window = outcome.window
            resume_out = {} if window.mode == "done" else {"window": window.to_json()}
            total = response.get("total") if first else None
            first = False
            held.append(
                RecordPage(
                    records=records,
                    last=last,
                    resume=resume_out,
                    expected=int(total) if total is not None else None,
                )
            )
            if window.mode == "done":
                break
            if sum(len(p.records) for p in held) + limit > group:
                yield held
                held = []
        if held:
            yield held

    @staticmethod
    def _stamp_of(obj: Mapping[str, Any]) -> Any:
        value = (obj.get("properties") or {}).get(windows.STAMP)
        return obj.get("updatedAt") if value is None else value

    @staticmethod
    def _wire(obj: Mapping[str, Any]) -> WireRecord:
        record: WireRecord = {"id": str(obj["id"]), "archived": bool(obj.get("archived"))}
        if obj.get("archivedAt") is not None:
            record["archivedAt"] = str(obj["archivedAt"])
        record.update(obj.get("properties") or {})
        return record

    def _merge_associations(self, object_name: str, records: list[WireRecord]) -> None:
        targets = ASSOCIATIONS.get(object_name, ())
        if not targets or not records:
            return
        ids = [str(r["id"]) for r in records]
        for to_type in targets:
            found = self.read_associations(object_name, to_type, ids)
            for record in records:
                record[f"associations.{to_type}"] = found.get(str(record["id"]), [])

    def read_associations(
        self, from_type: str, to_type: str, ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """``from id -> [to ids]`` for up to 1,000 ids in one v4 batch read (missing = none)."""
        out: dict[str, list[str]] = {}
        unique = list(dict.fromkeys(ids))
        api = self._assoc_batch_api()
        for start in range(0, len(unique), ASSOCIATION_BATCH):
            chunk = unique[start : start + ASSOCIATION_BATCH]
            body = {"inputs": [{"id": i} for i in chunk]}
            response = self._call(
                "associations_batch_read",
                functools.partial(
                    api.get_page,
                    from_type,
                    to_type,
                    batch_input_public_fetch_associations_batch_request=body,
                    _request_timeout=self._timeout,
                    _preload_content=False,
                ),
                from_type,
            )
            for result in response.get("results") or []:
                from_id = str(result["from"]["id"])
                to_ids = [str(t["toObjectId"]) for t in result.get("to") or []]
                out.setdefault(from_id, []).extend(to_ids)
        return out

    def read_records(
        self, object_name: str, fields: Sequence[str], ids: Sequence[str]
    ) -> RecordPage:
        """The current state of ``ids`` (batch read, 100 per call) with their associations; an
        id HubSpot does not return (archived, merged away, never there) is in
        ``deleted_ids``. The webhook handler reads the record an event names this way."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        api = self._api(object_name, "batch_api")
        properties = [f for f in fields if not f.startswith("associations.")]
        records: list[WireRecord] = []
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            body = {"properties": properties, "inputs": [{"id": i} for i in chunk]}
            response = self._call(
                "batch_read",
                functools.partial(
                    api.read,
                    batch_read_input_simple_public_object_id=body,
                    archived=False,
                    _request_timeout=self._timeout,
                    _preload_content=False,
                ),
                object_name,
            )
            records.extend(self._wire(obj) for obj in response.get("results") or [])
        self._merge_associations(object_name, records)
        found = {str(r["id"]) for r in records}
        return RecordPage(records=records, deleted_ids=[i for i in wanted if i not in found])

    # -- deletes -----------------------------------------------------------------------------

    def iter_deleted(self, object_name: str, start: ReadFrom | None) -> Iterator[RecordPage]:
        """Archived records with ``archivedAt`` at or after ``start.lower``."""
        start = start or ReadFrom()
        api = self._api(object_name, "basic_api")
        resume = start.resume
        after: str | None = str(resume["after"]) if resume.get("after") else None
        lower, _ = self._bounds(start)
        best: StreamKey | None = None
        if resume.get("max_ms") is not None and resume.get("max_id"):
            best = (from_ms(int(resume["max_ms"])), str(resume["max_id"]))
        while True:
            kwargs: dict[str, Any] = {
                "limit": ARCHIVED_PAGE_SIZE,
                "archived": True,
                "properties": [windows.OBJECT_ID],
                "_request_timeout": self._timeout,
                "_preload_content": False,
            }
            if after:
                kwargs["after"] = after
            response = self._call(
                "list_archived",
                functools.partial(api.get_page, **kwargs),
                object_name,
            )
            deleted: list[str] = []
            for obj in response.get("results") or []:
                archived_at = obj.get("archivedAt")
                ms = parse_stamp(archived_at) if archived_at is not None else None
                if lower is not None and ms is not None and ms < lower:
                    continue
                rid = str(obj["id"])
                deleted.append(rid)
                if ms is not None:
                    key = (from_ms(ms), rid)
                    if best is None or key_order(key) > key_order(best):
                        best = key
            after = _next_after(response)
            if after:
                # The archived list is not ordered by archivedAt: no ``last`` before its end.
                resume_out = {
                    "after": after,
                    "max_ms": to_ms(best[0]) if best else None,
                    "max_id": best[1] if best else None,
                }
                yield RecordPage(records=[], resume=resume_out, deleted_ids=deleted)
            else:
                yield RecordPage(records=[], last=best, deleted_ids=deleted)
                return
