"""Run sync passes from settings: the one function the CLI, the API and jobs call.

Builds, per CRM, the adapter (``app.crm.factory``), the mapping set (defaults plus the optional
``CRMSYNC_MAPPING_FILE``) and a :class:`~app.sync.pull.PullEngine` over the SQL store, then pulls
the objects parents-first (accounts before opportunities before notes) so children usually find
their parent already stored; the rest are linked when it arrives.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from app.crm.base import CrmName
from app.crm.factory import build_client
from app.db.enums import SyncKind
from app.db.sync_store import SqlSyncStore
from app.errors import ConfigError
from app.mappers.config import load_mapping_set
from app.settings import Settings
from app.sync.pull import PageProgress, PullEngine, PullResult


@contextmanager
def fewer_gc_passes(threshold: int = 50_000) -> Iterator[None]:
    """Run the cyclic garbage collector less often during a pass.

    A pull allocates hundreds of thousands of short-lived dicts that reference counting frees
    anyway; with CPython's default gen-0 threshold (700) the collector still walks them
    constantly. Raising it made a 60,000-record backfill 7% faster (median of five paired runs)
    for about 8 MB of memory. The previous thresholds are restored afterwards.
    """
    previous = gc.get_threshold()
    gc.set_threshold(threshold, previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def objects_for(settings: Settings, crm: CrmName) -> tuple[str, ...]:
    """The CRM objects crmsync pulls for ``crm``, parents first."""
    return load_mapping_set(
        crm, settings.mapping_file, default_currency=settings.default_currency
    ).object_names


def run_sync(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    kind: SyncKind,
    crms: Sequence[CrmName] | None = None,
    objects: Sequence[str] | None = None,
    since: datetime | None = None,
    triggered_by: str = "cli",
    on_page: Callable[[PageProgress], None] | None = None,
    restart: bool = False,
) -> list[PullResult]:
    """One pass of ``kind`` over the given (or all configured) CRMs and objects.

    A backfill continues the CRM's open backfill (``restart``: begins a new one); see
    :mod:`app.sync.backfill`.
    """
    chosen = list(crms) if crms else settings.enabled_crms
    if not chosen:
        raise ConfigError(
            "no CRM configured: set CRMSYNC_SALESFORCE_INSTANCE_URL with credentials "
            "or CRMSYNC_HUBSPOT_ACCESS_TOKEN (or start `crmsync sandbox --env-file .env`)"
        )
    with fewer_gc_passes():
        return _run_sync(
            settings, session_factory, kind, chosen, objects, since, triggered_by, on_page, restart
        )


def _run_sync(
    settings: Settings,
    session_factory: sessionmaker[Session],
    kind: SyncKind,
    chosen: Sequence[CrmName],
    objects: Sequence[str] | None,
    since: datetime | None,
    triggered_by: str,
    on_page: Callable[[PageProgress], None] | None,
    restart: bool = False,
) -> list[PullResult]:
    results: list[PullResult] = []
    store = SqlSyncStore(session_factory)
    for crm in chosen:
        if crm not in settings.enabled_crms:
            raise ConfigError(f"{crm} is not configured: its URL or credentials are missing")
        mapping_set = load_mapping_set(
            crm, settings.mapping_file, default_currency=settings.default_currency
        )
        mappings = {m.crm_object: m for m in mapping_set}
        wanted = list(objects) if objects else list(mapping_set.object_names)
        unknown = [o for o in wanted if o not in mappings]
        if unknown:
            known = ", ".join(mapping_set.object_names)
            raise ConfigError(f"unknown {crm} object(s) {', '.join(unknown)}; known: {known}")
        client = build_client(crm, settings)
        try:
            engine = PullEngine(store, client, mappings, settings.sync, on_page=on_page)
            backfill = kind is SyncKind.BACKFILL
            if backfill:
                engine.plan_backfill(
                    [o for o in mapping_set.object_names if o in wanted],
                    since=since,
                    restart=restart,
                )
            for object_name in mapping_set.object_names:
                if object_name in wanted:
                    results.append(
                        engine.backfill(object_name, triggered_by=triggered_by)
                        if backfill
                        else engine.pull(
                            object_name, kind=kind, since=since, triggered_by=triggered_by
                        )
                    )
        finally:
            client.close()
    return results
