"""``crmsync demo``: the main job end to end, in a database of its own (``./var/demo.db``).

Starts the sandbox (both CRMs, seeded with the same companies) in this process, points crmsync
at it, migrates the demo's database, backfills every object from Salesforce and from HubSpot,
runs one incremental pass (which finds nothing new), then plays the signal feeds, recomputes
health with ``--push`` and reads it back from both CRMs (:mod:`app.cli.demo_health`), and
prints what landed where. Nothing to install and no network beyond 127.0.0.1.

The demo never touches the user's data: it reads neither ``.env`` nor ``CRMSYNC_*`` variables
(:class:`DemoSettings`), writes into ``./var/demo.db`` (recreated on each run, once checked to be
the demo's) unless ``--database-url`` names another database, and refuses any database that
holds data it did not write (:mod:`app.cli.demo_db`).
"""

from __future__ import annotations

import json
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from app.cli.common import ExitCode, console, startup_done
from app.core.runs import SyncKind
from app.logging import configure_logging

# What the demo runs (the sync, the health story, the database, the settings) loads when the demo
# starts: registering the command costs the CLI's start-up nothing.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from app.settings import Settings
    from app.sync.pull import PullResult

DEMO_DATABASE = Path("var/demo.db")
DEMO_DATABASE_URL = f"sqlite:///./{DEMO_DATABASE}"
#: The usage feed's file, loaded with the CSV import (the other signals go through the API).
DEMO_SIGNALS_CSV = Path("var/demo-usage.csv")
#: The demo tells its own story step by step; the runs' INFO logs (a start and an end line per
#: run and push, dozens of them) would bury it. Warnings and errors still show.
DEMO_LOG_LEVEL = "WARNING"


@cache
def demo_settings_class() -> type[Settings]:
    """``DemoSettings``, defined on first use (the settings load with the demo, not the CLI)."""
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from app.settings import Settings

    class DemoSettings(Settings):
        """Settings made only of what the demo passes in: no ``CRMSYNC_*`` variable, no ``.env``.

        A user's ``.env`` may name a production database or real CRM tokens; the demo must not
        pick up either (nor a mapping file or tuning meant for their CRM).
        """

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    return DemoSettings


def demo(
    accounts: int = typer.Option(200, help="Companies to seed in each emulated CRM."),
    seed: int = typer.Option(42, help="Seed of the generated data."),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="Write here instead of ./var/demo.db: an empty database, or one the demo filled "
        "(anything else is refused). .env and CRMSYNC_DATABASE_URL are never used.",
    ),
) -> None:
    """Sandbox -> migrate -> backfill both CRMs -> incremental pass -> signals (API and CSV)
    -> health recompute --push -> health read back from both CRMs, in its own db."""
    from pydantic import SecretStr
    from sqlalchemy import func, select

    from app.cli.demo_closed_won import DEMO_ASSIGNMENT, SANDBOX_WEBHOOK_HOLD, closed_won_step
    from app.cli.demo_db import DEMO_TRIGGER
    from app.cli.demo_health import CrmAccess, run_health_demo
    from app.db import migrate
    from app.db.engine import make_engine, make_session_factory
    from app.db.models import Account, HandoverNote, Opportunity, SyncErrorRecord
    from app.settings import ScoringSettings
    from app.wiring.sync import run_sync
    from crmsync_sandbox import Sandbox, SandboxConfig

    configure_logging(DEMO_LOG_LEVEL)
    startup_done()  # its settings are its own: the collector runs again (app.cli.common.start_up)
    url = _prepare_database(database_url)
    console.print(f"[bold]1.[/bold] starting the CRM sandbox ({accounts} companies, seed {seed})")
    config = SandboxConfig(
        accounts=accounts, seed=seed, hs_rate_limits=False, emit_seed_webhooks=True
    )
    with Sandbox(config, webhooks=SANDBOX_WEBHOOK_HOLD) as sb:
        sf, hs = sb.info.salesforce, sb.info.hubspot
        console.print(f"   Salesforce {sf.instance_url}  HubSpot {hs.base_url}")
        settings = demo_settings_class()(
            log_level=DEMO_LOG_LEVEL,
            database_url=url,
            salesforce_instance_url=sf.instance_url,
            salesforce_api_version=sf.api_version,
            salesforce_client_id=sf.client_id,
            salesforce_client_secret=SecretStr(sf.client_secret),
            salesforce_organization_id=sf.organization_id,
            hubspot_base_url=hs.base_url,
            hubspot_access_token=SecretStr(hs.access_token),
            hubspot_app_secret=SecretStr(hs.app_secret),
            ca_bundle=sb.info.ca_file,
            scoring=ScoringSettings(assignment=DEMO_ASSIGNMENT),
        )
        console.print(f"[bold]2.[/bold] migrating {_shown(url)}")
        migrate.upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        factory = make_session_factory(engine)
        try:
            console.print("[bold]3.[/bold] backfilling Salesforce and HubSpot")
            backfill = run_sync(
                settings, factory, kind=SyncKind.BACKFILL, triggered_by=DEMO_TRIGGER
            )
            console.print("[bold]4.[/bold] one incremental pass (nothing changed in the CRMs)")
            incremental = run_sync(settings, factory, kind=SyncKind.PULL, triggered_by=DEMO_TRIGGER)
            _print_runs("backfill", backfill)
            _print_runs("incremental pass", incremental)
            console.print(
                "[bold]5.[/bold] signals from the usage feed, helpdesk, survey tool and billing "
                f"(generated, seed {seed})"
            )
            run_health_demo(
                settings,
                factory,
                CrmAccess(
                    sf_instance_url=sf.instance_url,
                    sf_api_version=sf.api_version,
                    sf_access_token=sf.access_token,
                    hs_base_url=hs.base_url,
                    hs_access_token=hs.access_token,
                    ca_file=sb.info.ca_file,
                ),
                seed=seed,
                csv_path=DEMO_SIGNALS_CSV,
                triggered_by=DEMO_TRIGGER,
            )
            closed_won_step(sb, settings, engine)
            operator_key = _console_key(factory)
            calls = sb.control("GET", "/stats")["calls_total"]
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
    _print_next_steps(url, operator_key)


#: The web console's address when ``crmsync serve`` runs with its defaults.
CONSOLE_URL = "http://127.0.0.1:8000/console/"


DEMO_KEY_NAME = "demo-operator"


def _console_key(factory: sessionmaker[Session]) -> str:
    """An operator key stored in the demo's database, to sign in to the console with.

    Only its hash is stored, so each run makes a new one; the one an earlier run printed is
    revoked first (a database named with ``--database-url`` is reused, and key names are
    unique among live keys)."""
    from app.core.access import Role
    from app.db.api_keys import create_key, list_keys, revoke_key

    with factory() as s:
        for old in list_keys(s, include_revoked=False):
            if old.name == DEMO_KEY_NAME:
                revoke_key(s, old.id)
        s.flush()
        _row, key = create_key(s, name=DEMO_KEY_NAME, role=Role.OPERATOR)
        s.commit()
    return key


def _prepare_database(database_url: str | None) -> str:
    """The URL the demo writes into, checked to be empty or the demo's (else exit 2).

    Its own ``./var/demo.db`` is then recreated, so every run shows a fresh backfill; a database
    named with ``--database-url`` is reused as it is, never dropped.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from app.cli.demo_db import why_not_a_demo_database
    from app.db.engine import make_engine

    url = demo_settings_class()(database_url=database_url or DEMO_DATABASE_URL).database_url
    own = database_url is None
    if own:
        DEMO_DATABASE.parent.mkdir(parents=True, exist_ok=True)
        if not DEMO_DATABASE.exists():
            return url
    try:
        engine = make_engine(url)
        try:
            reason = why_not_a_demo_database(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        _refuse(f"cannot read {_shown(url)}: {str(exc).splitlines()[0]}", "check --database-url.")
    if reason is not None:
        fix = (
            f"move {DEMO_DATABASE} away, or pass --database-url with an empty database."
            if own
            else "pass --database-url with an empty database, or omit it to use ./var/demo.db."
        )
        _refuse(
            f"refusing to write into {_shown(url)}: {reason}",
            f"the demo writes only into its own or an empty database; {fix}",
        )
    if own:
        for path in (DEMO_DATABASE, *(Path(f"{DEMO_DATABASE}{x}") for x in ("-wal", "-shm"))):
            path.unlink(missing_ok=True)
    return url


def _refuse(problem: str, fix: str) -> NoReturn:
    print(f"crmsync demo: {problem}", file=sys.stderr)
    print(f"crmsync demo: {fix}", file=sys.stderr)
    raise typer.Exit(code=ExitCode.USAGE)


def _shown(url: str) -> str:
    """``url`` without its password, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "the database URL"


def _crmsync_command() -> str:
    """How to run crmsync again from this directory in a new shell: ``crmsync`` when it is on
    the PATH, else the path this process was started by (``make demo`` runs
    ``.venv/bin/crmsync``, which a new shell without the venv activated does not find)."""
    started_as = sys.argv[0]
    on_path = shutil.which("crmsync")
    if Path(started_as).name == "crmsync":
        if on_path and Path(on_path).resolve() == Path(started_as).resolve():
            return "crmsync"
        return started_as
    return "crmsync" if on_path else f"{sys.executable} -m app.cli.main"


def _print_next_steps(url: str, operator_key: str) -> None:
    """What to try next; each line works as printed, from this directory, in a new shell. The
    web console (its URL and an operator key) comes last, where the eye ends."""
    cmd = _crmsync_command()
    lines = [
        f"The demo's data is in {_shown(url)}; your .env and CRMSYNC_* settings were not used.",
        "Next, the same by hand against a sandbox that keeps running (README, 'by hand'):",
        f"  shell 1: {cmd} sandbox --env-file .env",
        f"  shell 2: {cmd} db upgrade && {cmd} sync run",
        f"  then:    {cmd} serve      (the API, http://127.0.0.1:8000/docs)",
        "The sandbox writes its settings to .env (refusing a .env it did not write); the sync",
        "writes into CRMSYNC_DATABASE_URL, by default ./var/crmsync.db.",
        "The web console on the demo's data (the sandbox has stopped: read, no CRM calls):",
        f"  start:   CRMSYNC_DATABASE_URL={_shown(url)} CRMSYNC_CONSOLE__SECURE_COOKIE=false "
        f"{cmd} serve",
        f"  open:    {CONSOLE_URL}",
        f"  sign in with this operator key: {operator_key}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _print_runs(title: str, results: list[PullResult]) -> None:
    from rich.table import Table

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
