"""Salesforce adapter: :class:`SalesforceClient` implements :class:`app.crm.base.CrmClient`.

Authentication (crm-api.md A§1, A§3, A§3.1; flows in :mod:`app.auth_modes`):

* ``jwt``, ``refresh_token``, ``client_credentials``: :class:`~app.crm.salesforce.auth.TokenFetcher`
  posts the grant to ``{login_url}/services/oauth2/token``; the data calls then go through
  simple-salesforce in direct mode (``Salesforce(instance_url, session_id, session)``) at the
  ``instance_url`` of the token answer (the org's My Domain), never at the login host.
* ``session``: the configured session id and instance URL, used as they are (tests only).
* A 401 ``INVALID_SESSION_ID`` is answered by ONE new token and a repeat of the call; with a
  session there is nothing to renew, so it is an ``auth`` error naming
  ``CRMSYNC_SALESFORCE_ACCESS_TOKEN``. An access token configured next to a renewable flow is
  tried first; when it is rejected that is logged at WARNING before the new token, never silent.

Incremental pulls (A§4, A§11): ``queryAll`` (so soft-deleted rows arrive with ``IsDeleted`` in
the same stream) of ``SystemModstamp >= start.lower ORDER BY SystemModstamp, Id`` (the engine
computes the lower bound, lookback included), paged by ``nextRecordsUrl`` with
``Sforce-Query-Options: batchSize``. A REST query cursor is a snapshot, so thousands of rows
sharing one stamp are read once, without looping. Each page's ``last`` is the (stamp, id) of its
last row, and ``resume`` holds the ``nextRecordsUrl``; if that locator is rejected on resumption
(expired after ~15 min), the query restarts after ``start.after`` with the keyset predicate
``(SystemModstamp > t OR (SystemModstamp = t AND Id > id))``.

Large pulls (``use_bulk=True``) use a Bulk API 2.0 ``queryAll`` job, streamed page by page with
``Sforce-Locator``; ``resume`` holds the job id and next locator so a restart continues the job.
Bulk rows are unordered, so ``last`` is only reported with the job's last page.

Every HTTP request (retries and token refreshes included) counts in :attr:`api_calls`;
``Sforce-Limit-Info`` feeds :attr:`budget`. This module must not import ``app.sync``/``app.db``.
"""

from __future__ import annotations

import csv
import functools
import http.client
import io
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

import requests
import urllib3
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceOperationError,
)
from simple_salesforce.util import exception_handler

from app.crm import usage
from app.crm.base import CrmName, ReadFrom, RecordPage, StreamKey, WireRecord, key_order
from app.crm.budget import ApiBudget
from app.crm.http import build_session
from app.crm.retry import RetryPolicy, call_with_retry
from app.crm.salesforce import soql
from app.crm.salesforce.auth import CREDENTIAL_SETTINGS, TokenCache, TokenFetcher
from app.crm.salesforce.errors import classify_salesforce
from app.errors import (
    AuthError,
    ConfigError,
    Endpoint,
    FatalError,
    TransientError,
    UpstreamError,
)
from app.logging import get_logger
from app.settings import Settings

T = TypeVar("T")

CRM = "salesforce"
BULK_POLL_MAX_WAIT = 5.0  # seconds between Bulk job polls, at most
BULK_POLL_TIMEOUT = 3600.0  # give up on a Bulk job that isn't complete after an hour
_LOCATOR_GONE = {"INVALID_QUERY_LOCATOR", "NOT_FOUND"}
#: Times one results page is reopened after its download broke without any row read since the
#: last break; then the pass fails as transient (and resumes from its checkpoint later).
BULK_REOPENS = 3
#: What a results download breaking part-way raises while its rows are read.
_BROKEN_DOWNLOAD = (
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.SSLError,
    http.client.IncompleteRead,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
)
ACCESS_TOKEN_SETTING = "CRMSYNC_SALESFORCE_ACCESS_TOKEN"

log = get_logger(__name__)


def _flatten(record: Mapping[str, Any], prefix: str = "") -> WireRecord:
    """A REST record minus ``attributes``, parents flattened (``Account.Name``) as in Bulk CSV."""
    values = record.values()
    if not prefix and "attributes" in record and list(map(type, values)).count(dict) == 1:
        # No parent objects (the common case): only ``attributes`` to drop, without the loop.
        flat = dict(record)
        del flat["attributes"]
        return flat
    out: WireRecord = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        # Parsed JSON objects are plain dicts: a ``dict`` check is much cheaper than the
        # ``Mapping`` ABC check, and this runs for every field of every record pulled.
        if type(value) is dict and "attributes" in value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key if prefix else key] = value
    return out


def _query_all(soql_text: str, timeout: Any, sf: Salesforce) -> Mapping[str, Any]:
    """Every page of ``soql_text`` through ``queryAll`` (soft-deleted rows included)."""
    result: Mapping[str, Any] = sf.query_all(soql_text, include_deleted=True, timeout=timeout)
    return result


def _is_deleted(record: Mapping[str, Any]) -> bool:
    value = record.get(soql.DELETED_FIELD)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _key(record: Mapping[str, Any]) -> StreamKey:
    return soql.parse_datetime(str(record[soql.STAMP_FIELD])), str(record[soql.ID_FIELD])


class SalesforceClient:
    """Salesforce through simple-salesforce, with retries, re-auth and call counting."""

    #: True for a run's own client: its run counts its calls (:mod:`app.crm.usage`).
    metered_by_run: bool = False
    name: CrmName = "salesforce"

    def __init__(
        self,
        settings: Settings,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        mode = settings.salesforce_auth_mode
        if mode is None:
            raise ConfigError(
                "Salesforce is not configured: set CRMSYNC_SALESFORCE_AUTH and its credentials "
                "(README, Authentication)",
                crm=CRM,
            )
        self.settings = settings
        self._session = session if session is not None else build_session(settings)
        self._session.hooks.setdefault("response", []).append(self._on_response)
        self._sleep = sleep
        self._policy = policy or RetryPolicy.from_settings(settings.sync, sleep=sleep)
        self._timeout = settings.sync.request_timeout_seconds
        self._calls = 0
        self.budget = ApiBudget()
        # None for a session: nothing can renew a pasted session id.
        self._fetcher = TokenFetcher(settings, self._session) if mode != "session" else None
        self._token_cache = token_cache
        self._sf: Salesforce | None = None
        self._token: str | None = (
            settings.salesforce_access_token.get_secret_value()
            if settings.salesforce_access_token is not None
            else None
        )
        # Until a token answer names the org's instance, the configured one (session, or a
        # token configured next to a renewable flow).
        self._instance_url: str | None = settings.salesforce_instance_url
        if self._token is not None and self._instance_url is None:
            self._token = None  # a token without its instance cannot be used: fetch one
        self._mode = mode
        # True while the token in use is the configured one (not one we fetched ourselves).
        self._using_configured_token = self._token is not None

    # -- plumbing ----------------------------------------------------------------------------

    def _endpoint(self) -> Endpoint:
        """The host the next call goes to and the setting that chose it, for error messages:
        the login host until a token is fetched, then the instance its answer named (chosen by
        the login URL), or the configured instance while its configured token is in use."""
        if self._token is None or self._instance_url is None:
            url = self.settings.salesforce_token_url_base or ""
            setting = "CRMSYNC_SALESFORCE_LOGIN_URL"
        elif self._using_configured_token:
            url, setting = self._instance_url, "CRMSYNC_SALESFORCE_INSTANCE_URL"
        else:
            url, setting = self._instance_url, "CRMSYNC_SALESFORCE_LOGIN_URL"
        return Endpoint(
            url=url,
            url_setting=setting,
            credential_setting=CREDENTIAL_SETTINGS[self._mode],
            ca_bundle=str(self.settings.ca_bundle) if self.settings.ca_bundle else None,
        )

    @property
    def api_calls(self) -> int:
        return self._calls

    def _count(self) -> None:
        self._calls += 1
        if not self.metered_by_run:  # a run counts its own client's calls (app.crm.usage)
            usage.count(self.name)

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.budget.update_salesforce(response.headers)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SalesforceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch_token(self) -> None:
        """A new token (one request, counted here): the answer's instance serves the data.
        With a :class:`TokenCache` the shared token is taken when it is not the one just
        rejected, and no request is made."""
        assert self._fetcher is not None
        if self._token_cache is None:
            self._count()
            token = self._fetcher.fetch()
        else:
            if self._token is not None and not self._using_configured_token:
                self._token_cache.reject(self._token)
            token, fetched = self._token_cache.get(self._fetcher.fetch)
            if fetched:
                self._count()
        self._token = token.access_token
        self._instance_url = token.instance_url
        self._using_configured_token = False
        self._sf = None

    def _client(self) -> Salesforce:
        """The simple-salesforce client (direct mode), logging in first if needed."""
        if self._token is None:
            if self._fetcher is None:
                raise AuthError(
                    "no Salesforce credentials: set CRMSYNC_SALESFORCE_AUTH and its settings",
                    crm=CRM,
                )
            self._fetch_token()
        if self._sf is None:
            assert self._instance_url is not None
            self._sf = Salesforce(
                instance_url=self._instance_url,
                session_id=self._token,
                session=self._session,
                version=self.settings.salesforce_api_version,
                # Plain dicts decode several times faster than the OrderedDict default, and
                # Decimal keeps money exact instead of passing it through a binary float.
                object_pairs_hook=dict,
                parse_float=Decimal,
            )
        return self._sf

    def _call(self, operation: str, fn: Callable[[Salesforce], T], object_name: str | None) -> T:
        """One logical call: retried per the classification, re-authenticated once on 401."""

        def with_reauth() -> T:
            sf = self._client()
            try:
                return fn(sf)
            except SalesforceExpiredSession:
                if self._fetcher is None:
                    raise
                if self._using_configured_token:
                    log.warning(
                        "configured Salesforce access token rejected (401); fetching a new one",
                        setting=ACCESS_TOKEN_SETTING,
                        grant=self._fetcher.mode,
                    )
                self._fetch_token()
                self._count()
                return fn(self._client())

        return call_with_retry(
            with_reauth,
            classify=classify_salesforce,
            policy=self._policy,
            crm=CRM,
            operation=operation,
            object_name=object_name,
            on_attempt=self._count,
            endpoint=self._endpoint(),
        )

    def _query_headers(self, page_size: int) -> dict[str, str]:
        size = max(200, min(2000, page_size))
        return {"Sforce-Query-Options": f"batchSize={size}"}

    # -- CrmClient ---------------------------------------------------------------------------

    def estimate_changes(self, object_name: str, start: ReadFrom | None) -> int | None:
        start = start or ReadFrom()
        query = soql.count_query(object_name, start.lower, start.upper)
        result = self._call(
            "count",
            lambda sf: sf.query(query, include_deleted=True, timeout=self._timeout),
            object_name,
        )
        total = result.get("totalSize") if isinstance(result, Mapping) else None
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
        """REST pages or a Bulk job; ``use_bulk=None`` chooses from the first REST page.

        A stream being resumed keeps its mode. Otherwise, with ``use_bulk=None``, the first
        REST page's ``totalSize`` is the count: at or below ``bulk_threshold`` the pull goes on
        with REST (no ``SELECT COUNT()`` call at all); above it the page is dropped and a Bulk
        job reads everything (the page cost what the count did).
        """
        start = start or ReadFrom()
        mode = start.resume.get("mode")
        if mode == "bulk" or (use_bulk and mode != "rest"):
            yield from self._iter_bulk(object_name, fields, start, page_size=page_size)
        elif use_bulk is None and mode != "rest":
            threshold = self.settings.sync.bulk_threshold
            rest = self._iter_rest(object_name, fields, start, page_size=page_size)
            first = next(rest, None)
            if first is not None and first.expected is not None and first.expected > threshold:
                rest.close()
                log.info(
                    "salesforce.bulk.switch",
                    object=object_name,
                    expected=first.expected,
                    threshold=threshold,
                )
                for page in self._iter_bulk(object_name, fields, start, page_size=page_size):
                    yield replace(page, expected=first.expected)
                return
            if first is not None:
                yield first
                yield from rest
        else:
            yield from self._iter_rest(object_name, fields, start, page_size=page_size)

    def iter_deleted(self, object_name: str, start: ReadFrom | None) -> Iterator[RecordPage]:
        """Nothing extra: ``queryAll`` already reports soft deletes in :meth:`iter_changes`."""
        return iter(())

    def read_records(
        self, object_name: str, fields: Sequence[str], ids: Sequence[str], *, by: str = "Id"
    ) -> RecordPage:
        """The current state of the records whose ``by`` field (``Id``, or ``ParentId`` for
        notes) is one of ``ids``, through ``queryAll``: a soft-deleted one is in
        ``deleted_ids``; a hard-deleted one is simply absent. One call per 200 ids (the webhook
        handler reads the one record an event names, never trusting the event's copy)."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        records: list[WireRecord] = []
        deleted: list[str] = []
        names = ", ".join(soql.select_fields(fields))
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            literal = ", ".join(
                "'" + i.replace("\\", "\\\\").replace("'", "\\'") + "'" for i in chunk
            )
            if not by.replace("_", "").isalnum():
                raise ValueError(f"{by!r} is not a Salesforce field name")
            query = f"SELECT {names} FROM {object_name} WHERE {by} IN ({literal})"
            result: Mapping[str, Any] = self._call(
                "read", functools.partial(_query_all, query, self._timeout), object_name
            )
            page = self._page(result)
            records.extend(page.records)
            deleted.extend(page.deleted_ids)
        return RecordPage(records=records, deleted_ids=deleted)

    # -- REST --------------------------------------------------------------------------------

    @staticmethod
    def _page(result: Mapping[str, Any]) -> RecordPage:
        records: list[WireRecord] = []
        deleted: list[str] = []
        raws = result.get("records") or []
        for raw in raws:
            record = _flatten(raw)
            if _is_deleted(record):
                deleted.append(str(record[soql.ID_FIELD]))
            else:
                records.append(record)
        next_url = None if result.get("done", True) else result.get("nextRecordsUrl")
        total = result.get("totalSize")
        return RecordPage(
            records=records,
            # Rows come ordered by (SystemModstamp, Id): the last one is where the page ends.
            last=_key(raws[-1]) if raws else None,
            resume={"mode": "rest", "next_url": str(next_url)} if next_url else {},
            deleted_ids=deleted,
            expected=int(total) if total is not None else None,
        )

    def _query_more(
        self, object_name: str, url: str, headers: Mapping[str, str]
    ) -> Mapping[str, Any]:
        result: Mapping[str, Any] = self._call(
            "query_more",
            lambda sf: sf.query_more(
                url, identifier_is_url=True, headers=dict(headers), timeout=self._timeout
            ),
            object_name,
        )
        return result

    def _iter_rest(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom,
        *,
        page_size: int,
    ) -> Generator[RecordPage, None, None]:
        headers = self._query_headers(page_size)
        resume = start.resume
        next_url = resume.get("next_url") if resume.get("mode") == "rest" else None
        result: Mapping[str, Any] | None = None
        if next_url:
            try:
                result = self._query_more(object_name, str(next_url), headers)
            except UpstreamError as exc:
                if exc.code not in _LOCATOR_GONE and exc.status not in (400, 404):
                    raise
                result = None  # locator expired: restart below from the keyset position
        if result is None:
            if next_url and start.after is not None:
                # Restart mid-stream: everything up to (at, id) was committed.
                query = soql.changes_query(
                    object_name, fields, None, after=start.after, upper=start.upper
                )
            else:
                query = soql.changes_query(object_name, fields, start.lower, upper=start.upper)
            result = self._call(
                "query",
                lambda sf: sf.query(
                    query, include_deleted=True, headers=headers, timeout=self._timeout
                ),
                object_name,
            )
        while True:
            assert result is not None
            page = self._page(result)
            yield page
            next_url = page.resume.get("next_url")
            if not next_url:
                return
            result = self._query_more(object_name, str(next_url), headers)

    # -- Bulk API 2.0 ------------------------------------------------------------------------

    def _bulk_url(self, sf: Salesforce, path: str) -> str:
        return f"{sf.bulk2_url}{path}"

    def _bulk_request(
        self, sf: Salesforce, method: str, path: str, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {sf.session_id}", **kwargs.pop("headers", {})}
        response = self._session.request(
            method, self._bulk_url(sf, path), headers=headers, timeout=self._timeout, **kwargs
        )
        if response.status_code >= 300:
            exception_handler(response, name=f"bulk2 {path}")
        return response

    def _bulk_create(self, object_name: str, query: str) -> str:
        def create(sf: Salesforce) -> str:
            response = self._bulk_request(
                sf,
                "POST",
                "query",
                json={
                    "operation": "queryAll",
                    "query": query,
                    "columnDelimiter": "COMMA",
                    "lineEnding": "LF",
                },
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            return str(response.json()["id"])

        return self._call("bulk_create_job", create, object_name)

    def _bulk_wait(self, object_name: str, job_id: str) -> None:
        delay = 0.2
        waited = 0.0
        while True:
            job = self._call(
                "bulk_job_status",
                lambda sf: self._bulk_request(
                    sf, "GET", f"query/{job_id}", headers={"Accept": "application/json"}
                ).json(),
                object_name,
            )
            state = str(job.get("state"))
            if state == "JobComplete":
                return
            if state in ("Failed", "Aborted"):
                raise FatalError(
                    f"Salesforce Bulk query job {job_id} ended {state}: "
                    f"{str(job.get('errorMessage', ''))[:300]}; check the query and fields, "
                    "or pull with REST (raise CRMSYNC_SYNC__BULK_THRESHOLD)",
                    crm=CRM,
                    object_name=object_name,
                    code=state,
                )
            if waited > BULK_POLL_TIMEOUT:
                raise TransientError(
                    f"Salesforce Bulk query job {job_id} not complete after {waited:.0f} s; "
                    "retry the run later",
                    crm=CRM,
                    object_name=object_name,
                )
            self._sleep(delay)
            waited += delay
            delay = min(BULK_POLL_MAX_WAIT, delay * 2)

    def _bulk_open(
        self, object_name: str, job_id: str, locator: str
    ) -> tuple[requests.Response, str]:
        """Open one results page as a stream; returns it with the next page's locator.

        No ``maxRecords``: Salesforce then serves as large a page as it chooses (the sandbox:
        64 MB of CSV), so a large object costs a few calls instead of one per 2,000 rows. The
        rows are read off the stream by :meth:`_bulk_rows`, never held as a whole page.
        """
        params: dict[str, Any] = {}
        if locator:
            params["locator"] = locator

        def fetch(sf: Salesforce) -> tuple[requests.Response, str]:
            response = self._bulk_request(
                sf,
                "GET",
                f"query/{job_id}/results",
                params=params,
                headers={"Accept": "text/csv"},
                stream=True,
            )
            next_locator = response.headers.get("Sforce-Locator") or ""
            return response, "" if next_locator == "null" else next_locator

        return self._call("bulk_results", fetch, object_name)

    @staticmethod
    def _bulk_rows(response: requests.Response) -> Iterator[WireRecord]:
        """The rows of a streamed CSV page (quoted newlines included), empty values as None."""
        raw: Any = response.raw
        raw.decode_content = True
        raw.auto_close = False  # urllib3 closes at EOF otherwise, before TextIOWrapper is done
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            yield {k: (v if v != "" else None) for k, v in zip(header, row, strict=False)}

    def _page_rows(
        self,
        object_name: str,
        job_id: str,
        locator: str,
        response: requests.Response,
        skip: int,
    ) -> Iterator[WireRecord]:
        """The rows of one results page after its first ``skip``, reopening the page (its
        locator is stable) when the download breaks part-way and skipping the rows already
        handed out.

        A large page is read while the pass commits what it read, so a slow reader holds the
        download open for minutes; a server or proxy that closes it then, or a network drop,
        would otherwise fail a backfill that has 100,000s of rows behind it. Reopened at most
        :data:`BULK_REOPENS` times without progress; each reopen is one counted API call.
        """
        done = skip  # rows of the page before the next one to hand out
        stuck, broken_at = 0, -1
        current = response
        try:
            while True:
                index = 0
                try:
                    for record in self._bulk_rows(current):
                        index += 1
                        if index <= done:
                            continue
                        done = index
                        yield record
                    return
                except _BROKEN_DOWNLOAD as exc:
                    stuck = stuck + 1 if done == broken_at else 1
                    broken_at = done
                    if stuck > BULK_REOPENS:
                        raise TransientError(
                            f"Salesforce Bulk results of job {job_id} broke off {stuck} times "
                            f"at row {done} of a page ({type(exc).__name__}); the run resumes "
                            "there later",
                            crm=CRM,
                            object_name=object_name,
                        ) from exc
                    log.warning(
                        "salesforce bulk results broke off; reopening the page",
                        job_id=job_id,
                        rows_read=done,
                        error=type(exc).__name__,
                    )
                    current.close()
                    current, _ = self._bulk_open(object_name, job_id, locator)
        finally:
            current.close()

    def _iter_bulk(
        self,
        object_name: str,
        fields: Sequence[str],
        start: ReadFrom,
        *,
        page_size: int,
    ) -> Iterator[RecordPage]:
        """A Bulk 2.0 ``queryAll`` job, committed every ``page_size`` rows of its result pages.

        ``resume`` names the job, the locator of the results page being read (``""``: the
        first) and ``skip``, the rows of that page already committed: a pass killed in the
        middle of a large results page reads that page again and skips them. Locators are
        stable while the job exists (A§7); a purged job (404) starts a new one.
        """
        resume = start.resume
        job_id = str(resume["job_id"]) if resume.get("mode") == "bulk" else ""
        locator = str(resume.get("locator") or "") if job_id else ""
        skip = int(resume.get("skip") or 0) if job_id else 0
        best: StreamKey | None = None
        if resume.get("max_at") and resume.get("max_id"):
            best = (soql.parse_datetime(str(resume["max_at"])), str(resume["max_id"]))
        opened: tuple[requests.Response, str] | None = None
        if job_id:
            try:
                opened = self._bulk_open(object_name, job_id, locator)
            except UpstreamError as exc:
                if exc.status not in (400, 404) and exc.code not in _LOCATOR_GONE:
                    raise
                job_id, locator, skip, opened = "", "", 0, None  # job purged: start a new one
        if opened is None:
            query = soql.changes_query(
                object_name, fields, start.lower, order=False, upper=start.upper
            )
            job_id = self._bulk_create(object_name, query)
            self._bulk_wait(object_name, job_id)
            locator, skip = "", 0
            opened = self._bulk_open(object_name, job_id, "")
        while True:
            response, next_locator = opened
            try:
                # The first ``skip`` rows were committed before an interruption.
                rows = self._page_rows(object_name, job_id, locator, response, skip)
                consumed = skip
                while True:
                    records: list[WireRecord] = []
                    deleted: list[str] = []
                    taken = 0
                    for record in rows:
                        taken += 1
                        key = _key(record)
                        if best is None or key_order(key) > key_order(best):
                            best = key
                        if _is_deleted(record):
                            deleted.append(str(record[soql.ID_FIELD]))
                        else:
                            records.append(record)
                        if taken >= page_size:
                            break
                    consumed += taken
                    page_done = taken < page_size
                    if page_done and not next_locator:
                        yield RecordPage(records=records, last=best, deleted_ids=deleted, bulk=True)
                        return
                    if taken or page_done:
                        # Rows are unordered: no ``last`` until the job's last row.
                        resume_out: dict[str, Any] = {
                            "mode": "bulk",
                            "job_id": job_id,
                            "locator": next_locator if page_done else locator,
                            "skip": 0 if page_done else consumed,
                            "max_at": best[0].isoformat() if best else None,
                            "max_id": best[1] if best else None,
                        }
                        yield RecordPage(
                            records=records, resume=resume_out, deleted_ids=deleted, bulk=True
                        )
                    if page_done:
                        break
            finally:
                response.close()
            locator, skip = next_locator, 0
            opened = self._bulk_open(object_name, job_id, locator)


__all__ = ["SalesforceClient", "SalesforceError", "SalesforceOperationError"]
