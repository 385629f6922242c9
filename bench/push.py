"""Push benchmark: N changed accounts pushed to each CRM in the sandbox (issue #17 item 11).

For each CRM, on a fresh SQLite database: backfill the accounts, change the health fields of
every one of them on the CS side (as a recompute would: values plus ``stamp``-style change
marks), then measure as separate processes (wall time, peak RSS from ``wait4``):

* ``crmsync push --crm X --object Account|companies``: API calls beside the floor
  (:func:`app.crm.writes.planned_calls`: one Bulk 2.0 ingest job on Salesforce above the
  threshold, ceil(N/100) batches on HubSpot);
* the same push again with nothing changed (target: 0 calls);
* a naive client, in this process, that writes one record per call (``PATCH`` of one
  sObject / one company) for ``--naive`` records, extrapolated to N.

Run: ``.venv/bin/python -m bench.push [--push-accounts N] [--naive M]`` (``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, select, update

from app.crm.writes import planned_calls
from app.db.models import Account
from bench.pull import crmsync_env, run_measured, sandbox_calls, start_sandbox

OBJECT = {"salesforce": "Account", "hubspot": "companies"}
ID_COLUMN = {"salesforce": Account.sf_id, "hubspot": Account.hs_id}


def change_every_account(database_url: str, crm: str) -> int:
    """Set new health values on every account of ``crm`` and mark them CS-changed, in one
    statement (the way a set-based recompute writes)."""
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="microseconds")
    with engine.begin() as conn:
        result = conn.execute(
            update(Account)
            .where(ID_COLUMN[crm].is_not(None))
            .values(
                health_score=(Account.id % 90) + 5,
                health_band="yellow",
                cs_changed_at=now,
                field_stamps={"health_score": stamp, "health_band": stamp},
            )
        )
    engine.dispose()
    return int(result.rowcount)


def crm_ids(database_url: str, crm: str, limit: int) -> list[str]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        ids = conn.scalars(
            select(ID_COLUMN[crm]).where(ID_COLUMN[crm].is_not(None)).limit(limit)
        ).all()
    engine.dispose()
    return [str(i) for i in ids]


def naive_writes(info: dict[str, Any], crm: str, ids: list[str]) -> float:
    """One PATCH per record, as a client without batching writes: seconds for ``ids``."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify (crm-api.md 0)
    session.verify = info["ca_file"]
    started = time.perf_counter()
    for n, record_id in enumerate(ids):
        if crm == "salesforce":
            sf = info["salesforce"]
            base = f"{sf['instance_url']}/services/data/v{sf['api_version']}"
            url = f"{base}/sobjects/Account/{record_id}"
            body: dict[str, Any] = {"Health_Score__c": n % 90 + 5}
            token = sf["access_token"]
        else:
            hs = info["hubspot"]
            url = f"{hs['base_url']}/crm/v3/objects/companies/{record_id}"
            body = {"properties": {"crmsync_health_score": str(n % 90 + 5)}}
            token = hs["access_token"]
        response = session.patch(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        response.raise_for_status()
    return time.perf_counter() - started


def push(
    info: dict[str, Any], env: dict[str, str], crm: str
) -> tuple[float, float, dict[str, Any], int]:
    """One measured push; also the calls the sandbox served during it (the run row's count
    leaves out the target-field check, made on a client of its own)."""
    cmd = [sys.executable, "-m", "app.cli.main", "push", "--crm", crm, "--object", OBJECT[crm]]
    before = sandbox_calls(info, "")
    secs, rss, out = run_measured(cmd, env)
    served = sandbox_calls(info, "") - before
    return secs, rss, json.loads(out)["runs"][0], served


def bench_crm(info: dict[str, Any], workdir: Path, crm: str, naive: int) -> list[dict[str, Any]]:
    url = f"sqlite:///{workdir / f'push-{crm}.db'}"
    env = crmsync_env(info, url, bulk=True)
    run_measured([sys.executable, "-m", "app.cli.main", "db", "upgrade"], env)
    run_measured(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "sync",
            "backfill",
            "--crm",
            crm,
            "--object",
            OBJECT[crm],
        ],
        env,
    )
    changed = change_every_account(url, crm)
    secs, rss, first, served = push(info, env, crm)
    floor = planned_calls(crm, changed, 0)  # type: ignore[arg-type]
    rows = [
        {
            "crm": crm,
            "path": "crmsync push, every account changed",
            "records": first["updated"] + first["created"],
            "secs": secs,
            "calls": first["api_calls"],
            "served": served,
            "floor": floor,
            "rss": rss,
        }
    ]
    secs2, rss2, second, served2 = push(info, env, crm)
    rows.append(
        {
            "crm": crm,
            "path": "crmsync push again, nothing changed",
            "records": second["updated"] + second["created"],
            "secs": secs2,
            "calls": second["api_calls"],
            "served": served2,
            "floor": 0,
            "rss": rss2,
        }
    )
    ids = crm_ids(url, crm, naive)
    naive_secs = naive_writes(info, crm, ids)
    scale = changed / len(ids)
    rows.append(
        {
            "crm": crm,
            "path": f"naive: 1 call per record ({len(ids):,} measured, x{scale:.0f})",
            "records": changed,
            "secs": naive_secs * scale,
            "calls": changed,
            "served": changed,
            "floor": floor,
            "rss": float("nan"),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--push-accounts", type=int, default=50_000)
    parser.add_argument("--naive", type=int, default=2_000)
    parser.add_argument("--crm", action="append", choices=["salesforce", "hubspot"])
    args, _other = parser.parse_known_args()  # make bench passes the pull's options too
    console = Console(width=150)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        console.print(f"push: starting the sandbox with {args.push_accounts:,} accounts ...")
        proc, info = start_sandbox(workdir, args.push_accounts)
        try:
            for crm in args.crm or ["salesforce", "hubspot"]:
                console.print(f"push: benchmarking {crm} ...")
                rows += bench_crm(info, workdir, crm, args.naive)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    table = Table(title=f"push of {args.push_accounts:,} changed accounts (sandbox, SQLite)")
    for col in (
        "crm",
        "path",
        "records",
        "seconds",
        "API calls (run)",
        "served (sandbox)",
        "floor",
        "served / floor",
        "peak RSS MB",
    ):
        table.add_column(col, justify="left" if col in ("crm", "path") else "right")
    for r in rows:
        table.add_row(
            r["crm"],
            r["path"],
            f"{r['records']:,}",
            f"{r['secs']:.1f}",
            f"{r['calls']:,}",
            f"{r['served']:,}",
            f"{r['floor']:,}",
            f"{r['served'] / r['floor']:.2f}" if r["floor"] else "-",
            "-" if r["rss"] != r["rss"] else f"{r['rss']:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
