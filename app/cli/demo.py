"""``crmsync demo``: the main job end to end on the embedded default (SQLite under ./var).

Starts the sandbox (both CRMs, seeded with the same companies) in this process, points crmsync
at it, migrates the database, backfills every object from Salesforce and from HubSpot, runs one
incremental pass (which finds nothing new), and prints what landed where. Nothing to install
and no network beyond 127.0.0.1.
"""

from __future__ import annotations

import json

import typer
from pydantic import SecretStr
from rich.table import Table
from sqlalchemy import func, select

from app.cli.common import console, load_settings
from app.db.engine import make_engine, make_session_factory
from app.db.enums import SyncKind
from app.db.models import Account, HandoverNote, Opportunity, SyncErrorRecord
from app.settings import Settings
from app.sync.pull import PullResult


def demo(
    accounts: int = typer.Option(200, help="Companies to seed in each emulated CRM."),
    seed: int = typer.Option(42, help="Seed of the generated data."),
) -> None:
    """Sandbox -> migrate -> backfill both CRMs -> incremental pass -> summary."""
    from app.db import migrate
    from app.sandbox import Sandbox, SandboxConfig
    from app.sync.service import run_sync

    base = load_settings()
    console.print(f"[bold]1.[/bold] starting the CRM sandbox ({accounts} companies, seed {seed})")
    with Sandbox(SandboxConfig(accounts=accounts, seed=seed, hs_rate_limits=False)) as sb:
        sf, hs = sb.info.salesforce, sb.info.hubspot
        console.print(f"   Salesforce {sf.instance_url}  HubSpot {hs.base_url}")
        settings = Settings(
            database_url=base.database_url,
            salesforce_instance_url=sf.instance_url,
            salesforce_api_version=sf.api_version,
            salesforce_client_id=sf.client_id,
            salesforce_client_secret=SecretStr(sf.client_secret),
            salesforce_organization_id=sf.organization_id,
            hubspot_base_url=hs.base_url,
            hubspot_access_token=SecretStr(hs.access_token),
            hubspot_app_secret=SecretStr(hs.app_secret),
            ca_bundle=sb.info.ca_file,
            sync=base.sync,
        )
        console.print(f"[bold]2.[/bold] migrating {settings.database_url}")
        migrate.upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        factory = make_session_factory(engine)
        try:
            console.print("[bold]3.[/bold] backfilling Salesforce and HubSpot")
            backfill = run_sync(settings, factory, kind=SyncKind.BACKFILL, triggered_by="demo")
            console.print("[bold]4.[/bold] one incremental pass (nothing changed in the CRMs)")
            incremental = run_sync(settings, factory, kind=SyncKind.PULL, triggered_by="demo")
            calls = sb.control("GET", "/stats")["calls_total"]
            _print_runs("backfill", backfill)
            _print_runs("incremental pass", incremental)
            with factory() as s:
                totals = {
                    "accounts": s.scalar(select(func.count()).select_from(Account)),
                    "opportunities": s.scalar(select(func.count()).select_from(Opportunity)),
                    "handover notes": s.scalar(select(func.count()).select_from(HandoverNote)),
                    "open sync errors": s.scalar(
                        select(func.count())
                        .select_from(SyncErrorRecord)
                        .where(SyncErrorRecord.resolved_at.is_(None))
                    ),
                }
        finally:
            engine.dispose()
    console.print(f"CS database now holds: {json.dumps(totals)}")
    console.print(f"API calls the CRMs saw (sandbox accounting): {json.dumps(calls)}")
    console.print(
        "Next: `crmsync sandbox --env-file .env` keeps a sandbox running; "
        "`crmsync sync run` then syncs against it; `crmsync serve` serves the API."
    )


def _print_runs(title: str, results: list[PullResult]) -> None:
    table = Table(title=title)
    for column in ("crm", "object", "status", "read", "created", "updated", "unchanged"):
        table.add_column(column)
    for column in ("deleted", "skipped", "failed", "API calls"):
        table.add_column(column)
    for r in results:
        c = r.counts
        table.add_row(
            r.crm,
            r.object_name,
            str(r.status),
            *(
                str(v)
                for v in (
                    c.read,
                    c.created,
                    c.updated,
                    c.unchanged,
                    c.deleted,
                    c.skipped,
                    c.failed,
                    c.api_calls,
                )
            ),
        )
    console.print(table)
