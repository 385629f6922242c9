"""The health part of ``crmsync demo`` (issue #18 item 9): signals in, recompute, onto the CRMs,
read back.

After the backfill, the demo plays the systems signals come from (a product usage feed, a
helpdesk, a survey tool, the CS team's touchpoints, billing) with the deterministic generator of
:mod:`app.demo_signals.generator`, for the accounts the sandbox seeded, and loads them the way
those systems would:

* every kind but usage through the **HTTP API**: the demo serves crmsync's own app
  (:func:`app.main.create_app`, uvicorn on a free port of 127.0.0.1) and posts the batches to
  ``POST /api/v1/signals/{kind}`` with ``requests``;
* usage through the **CSV import**: a file written under ``./var`` and stored by
  :func:`app.cli.signals_import.import_csv`, the code of ``crmsync signals import``.

Then ``crmsync health recompute --push`` (:func:`app.wiring.recompute.run_recompute`) computes
every account and writes the changed fields to both CRMs, and the demo reads the Salesforce
Accounts and HubSpot companies back through simple-salesforce and hubspot-api-client: it prints
the accounts per band and tier as the CRMs hold them, checks each against the CS database
(a mismatch is printed and fails the demo), and shows three accounts with their reasons.

Nothing here imports the sandbox: the demo passes its connection details in (``CrmAccess``).
"""

from __future__ import annotations

import csv
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from rich.table import Table
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from app.cli.common import console
from app.cli.signals_import import ImportOutcome, import_csv
from app.db.models import Account, PushLedgerEntry, SyncCursor
from app.demo_signals.generator import DemoAccount, assign_profiles, generate
from app.domain.signal_rows import MAX_BATCH
from app.errors import CrmsyncError
from app.settings import Settings
from app.sync.push_ports import PUSH_STREAM
from app.wiring.recompute import RecomputeOutcome, run_recompute

BANDS = ("green", "yellow", "red", "unknown")
TIERS = ("key", "high", "low", "tech")
SF_FIELDS = ("Health_Score__c", "Health_Band__c", "Health_Reasons__c", "Tier__c")
HS_PROPS = ("crmsync_health_score", "crmsync_health_band", "crmsync_health_reasons", "crmsync_tier")


class DemoHealthError(CrmsyncError):
    """The health part of the demo went wrong (a refused batch, a CRM value not read back)."""


@dataclass(frozen=True)
class CrmAccess:
    """How the demo reaches the sandbox's CRMs with the real client libraries."""

    sf_instance_url: str
    sf_api_version: str
    sf_access_token: str
    hs_base_url: str
    hs_access_token: str
    ca_file: str


@dataclass
class HealthDemo:
    """What the health part did, for the summary and the acceptance test."""

    signals: dict[str, int] = field(default_factory=dict)  # kind -> rows stored
    csv: ImportOutcome | None = None
    recompute: RecomputeOutcome | None = None
    read_back: dict[str, int] = field(default_factory=dict)  # crm -> records read back
    mismatches: list[str] = field(default_factory=list)
    by_band_tier: dict[tuple[str, str], int] = field(default_factory=dict)


def demo_accounts(factory: sessionmaker[Session]) -> list[DemoAccount]:
    """The synced accounts, named by their CRM id (each CRM's record is its own account)."""
    a = Account.__table__.c
    out = []
    with factory() as s:
        for sf_id, hs_id, domain, seats in s.execute(
            select(a.sf_id, a.hs_id, a.domain, a.licensed_seats).where(
                a.deleted_at.is_(None), a.domain.is_not(None)
            )
        ):
            if sf_id:
                out.append(DemoAccount("sf_id", sf_id, domain, seats))
            elif hs_id:
                out.append(DemoAccount("hs_id", hs_id, domain, seats))
    return out


@contextmanager
def served(settings: Settings) -> Iterator[tuple[str, str]]:
    """crmsync's HTTP API on a free port of 127.0.0.1 for the block; yields its base URL and
    an operator API key made for the demo (every ``/api/v1`` route needs one)."""
    import uvicorn

    from app.core.access import Role
    from app.db.api_keys import create_key
    from app.main import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings)
    with app.state.session_factory() as session:
        _row, key = create_key(
            session, name=f"demo-{port}-{time.time_ns()}", role=Role.OPERATOR, expires_in_days=1
        )
        session.commit()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DemoHealthError("the demo's API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def post_signals(base_url: str, kind: str, rows: Sequence[dict[str, Any]], key: str) -> int:
    """POST the rows in batches of at most 10,000; returns the rows stored."""
    http = requests.Session()
    http.trust_env = False  # 127.0.0.1, never through a proxy
    http.headers["Authorization"] = f"Bearer {key}"
    stored = 0
    for i in range(0, len(rows), MAX_BATCH):
        answer = http.post(
            f"{base_url}/api/v1/signals/{kind}", json={"rows": list(rows[i : i + MAX_BATCH])}
        )
        body = answer.json()
        if answer.status_code != 200:
            raise DemoHealthError(
                f"POST /api/v1/signals/{kind}: {answer.status_code} {str(body)[:300]}"
            )
        stored += int(body["stored"])
    return stored


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def run_health_demo(
    settings: Settings,
    factory: sessionmaker[Session],
    crm: CrmAccess,
    *,
    seed: int,
    csv_path: Path,
    triggered_by: str,
) -> HealthDemo:
    """Signals (API and CSV) -> recompute --push -> read back from both CRMs -> printed."""
    done = HealthDemo()
    today = datetime.now(UTC).date()
    accounts = demo_accounts(factory)
    rows = generate(accounts, seed, today)
    profile_of = assign_profiles((a.domain for a in accounts), seed)
    profiles = Counter(profile_of[a.domain] for a in accounts)
    console.print(
        "   signal profiles: " + ", ".join(f"{n} {p}" for p, n in sorted(profiles.items()))
    )
    with served(settings) as (base_url, key):
        console.print(f"   POST {base_url}/api/v1/signals/{{kind}} (crmsync's API, served)")
        for kind, kind_rows in rows.items():
            if kind != "usage":
                done.signals[kind] = post_signals(base_url, kind, kind_rows, key)
    write_csv(csv_path, rows["usage"])
    console.print(f"   crmsync signals import {csv_path} --kind usage")
    with csv_path.open(newline="", encoding="utf-8") as handle:
        done.csv = import_csv(factory, handle, "usage", ImportOutcome("usage"))
    if done.csv.errors:
        raise DemoHealthError(f"the usage CSV had refused rows: {done.csv.errors[0]}")
    done.signals["usage"] = done.csv.stored
    console.print("   stored: " + ", ".join(f"{n} {k}" for k, n in done.signals.items()) + " rows")
    console.print("[bold]6.[/bold] crmsync health recompute --push (every account, both CRMs)")
    forget_pushes(factory)
    done.recompute = run_recompute(
        settings, push=True, session_factory=factory, triggered_by=triggered_by
    )
    summary = done.recompute.summary()
    if summary["status"] != "succeeded" or summary.get("push_errors"):
        raise DemoHealthError(f"the recompute did not succeed: {summary}")
    pushed = {
        p.crm: (
            sum(r.counts.created + r.counts.updated for r in p.results),
            sum(r.counts.api_calls for r in p.results),
        )
        for p in done.recompute.pushes
    }
    console.print(
        f"   {summary['selected']} accounts computed, {summary['changed']} changed; pushed "
        + ", ".join(f"{c}: {n} records in {k} API calls" for c, (n, k) in pushed.items())
    )
    console.print("[bold]7.[/bold] health on the CRM records, read back with the client libraries")
    _read_back(factory, crm, done)
    _print_table(done)
    _print_examples(factory, crm, profile_of)
    if done.mismatches:
        for line in done.mismatches[:10]:
            console.print(f"[red]{line}[/red]")
        raise DemoHealthError(f"{len(done.mismatches)} CRM value(s) differ from the CS database")
    return done


def forget_pushes(factory: sessionmaker[Session]) -> None:
    """Forget what earlier demo runs pushed (a database reused with ``--database-url``): each
    demo starts a new sandbox, whose CRMs hold none of it, so the push must not skip values
    as already there. Only ever the demo's own database (checked before anything is written)."""
    with factory() as s, s.begin():
        s.execute(delete(PushLedgerEntry))
        s.execute(delete(SyncCursor).where(SyncCursor.stream == PUSH_STREAM))


def _salesforce(crm: CrmAccess) -> Any:
    from simple_salesforce.api import Salesforce

    session = requests.Session()
    session.trust_env = False
    session.verify = crm.ca_file
    return Salesforce(
        instance_url=crm.sf_instance_url,
        session_id=crm.sf_access_token,
        session=session,
        version=crm.sf_api_version,
    )


def _hubspot_companies(crm: CrmAccess) -> list[tuple[str, dict[str, Any]]]:
    import hubspot

    client = hubspot.HubSpot(
        access_token=crm.hs_access_token, host=crm.hs_base_url, ssl_ca_cert=crm.ca_file
    )
    out: list[tuple[str, dict[str, Any]]] = []
    after = None
    while True:
        page = client.crm.companies.basic_api.get_page(
            limit=100, properties=list(HS_PROPS), after=after
        )
        out.extend((c.id, c.properties) for c in page.results)
        if page.paging is None or page.paging.next is None:
            return out
        after = page.paging.next.after


def _read_back(factory: sessionmaker[Session], crm: CrmAccess, done: HealthDemo) -> None:
    """Each CRM record's health beside the CS account's: counted per band and tier (from the
    CRM values), every difference a mismatch."""
    with factory() as s:
        cs = {
            (("sf" if a.sf_id else "hs"), a.sf_id or a.hs_id): a
            for a in s.scalars(select(Account).where(Account.deleted_at.is_(None)))
        }
        s.expunge_all()
    crm_values: list[tuple[str, str, int | None, str | None, str | None, str | None]] = []
    records = _salesforce(crm).query_all(f"SELECT Id, {', '.join(SF_FIELDS)} FROM Account")
    for r in records["records"]:
        score = r["Health_Score__c"]
        crm_values.append(
            (
                "sf",
                r["Id"],
                None if score is None else int(score),
                r["Health_Band__c"],
                r["Tier__c"],
                r["Health_Reasons__c"],
            )
        )
    done.read_back["salesforce"] = len(records["records"])
    companies = _hubspot_companies(crm)
    for company_id, p in companies:
        score = p.get("crmsync_health_score") or None
        crm_values.append(
            (
                "hs",
                company_id,
                None if score is None else int(float(score)),
                p.get("crmsync_health_band") or None,
                p.get("crmsync_tier") or None,
                p.get("crmsync_health_reasons") or None,
            )
        )
    done.read_back["hubspot"] = len(companies)
    counts: Counter[tuple[str, str]] = Counter()
    for where, crm_id, score, band, tier, reasons in crm_values:
        account = cs.get((where, crm_id))
        if account is None:
            done.mismatches.append(f"{where} {crm_id}: no CS account")
            continue
        theirs = (score, band, tier, reasons or None)
        ours = (account.health_score, account.health_band, account.tier, account.health_reasons)
        if theirs != ours:
            done.mismatches.append(f"{where} {crm_id}: CRM {theirs} != CS {ours}")
        counts[(band or "-", tier or "-")] += 1
    done.by_band_tier = dict(counts)


def _print_table(done: HealthDemo) -> None:
    read = " + ".join(f"{n} {crm}" for crm, n in done.read_back.items())
    table = Table(title=f"accounts per band and tier, as the CRMs hold them ({read} records)")
    table.add_column("band")
    for tier in TIERS:
        table.add_column(tier, justify="right")
    table.add_column("total", justify="right")
    for band in BANDS:
        cells = [done.by_band_tier.get((band, t), 0) for t in TIERS]
        table.add_row(band, *(str(c) for c in cells), str(sum(cells)))
    totals = [sum(done.by_band_tier.get((b, t), 0) for b in BANDS) for t in TIERS]
    table.add_row("total", *(str(c) for c in totals), str(sum(totals)))
    console.print(table)
    verdict = "all match" if not done.mismatches else f"{len(done.mismatches)} differ"
    console.print(f"   CRM values vs the CS database: {verdict}")


def _print_examples(
    factory: sessionmaker[Session], crm: CrmAccess, profile_of: dict[str, str]
) -> None:
    """Three Salesforce Accounts with their reasons, as Salesforce holds them: a false-loyalty
    account, a red one and a green one (the first of each, by name)."""
    with factory() as s:
        accounts = list(
            s.scalars(
                select(Account)
                .where(Account.sf_id.is_not(None), Account.deleted_at.is_(None))
                .order_by(Account.name)
            )
        )
    picks: list[tuple[str, Account]] = []
    tests = (
        ("false loyalty", lambda a: bool(a.false_loyalty)),
        ("red", lambda a: a.health_band == "red"),
        ("green", lambda a: a.health_band == "green"),
    )
    for label, test in tests:
        found = next((a for a in accounts if test(a) and all(a is not p for _l, p in picks)), None)
        if found is not None:
            picks.append((label, found))
    if not picks:
        return
    ids = ", ".join(f"'{a.sf_id}'" for _l, a in picks)
    records = {
        r["Id"]: r
        for r in _salesforce(crm).query_all(
            f"SELECT Id, Name, {', '.join(SF_FIELDS)} FROM Account WHERE Id IN ({ids})"
        )["records"]
    }
    console.print("   three accounts as Salesforce shows them:")
    for label, account in picks:
        r = records[account.sf_id or ""]
        score = r["Health_Score__c"]
        console.print(
            f"   - {r['Name']} ({label}; profile {profile_of.get(account.domain or '', '-')}): "
            f"health {'-' if score is None else int(score)} {r['Health_Band__c']}, "
            f"tier {r['Tier__c']}\n     {r['Health_Reasons__c']}"
        )


__all__ = ["CrmAccess", "HealthDemo", "demo_accounts", "generate", "run_health_demo"]
