"""Push benchmark: N changed accounts pushed to each CRM in the sandbox (issue #17 item 11).

For each CRM, on a fresh SQLite database: backfill the accounts, change the health fields of
every one of them on the CS side (as a recompute would: values plus ``stamp``-style change
marks), then measure as separate processes (wall time, peak RSS from ``wait4``):

* ``crmsync push --crm X --object Account|companies``: API calls beside the floor
  (:func:`app.crm.writes.planned_calls`: one Bulk 2.0 ingest job on Salesforce above the
  threshold, ceil(N/100) batches on HubSpot);
* the same push again with nothing changed (target: 0 calls);
* every account changed again, pushed with 10 % of the write requests refused with a 429: the
  calls the run counts (every request, refused ones included: about 1/0.9 = 1.11x the floor)
  beside the requests the sandbox accepted (the floor itself, 1.00x; ``docs/push.md``);
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
from bench.pull import crmsync_env, run_measured, start_sandbox

OBJECT = {"salesforce": "Account", "hubspot": "companies"}
ID_COLUMN = {"salesforce": Account.sf_id, "hubspot": Account.hs_id}


def change_every_account(database_url: str, crm: str, shift: int = 0) -> int:
    """Set new health values on every account of ``crm`` and mark them CS-changed, in one
    statement (the way a set-based recompute writes); ``shift`` makes other values."""
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="microseconds")
    with engine.begin() as conn:
        result = conn.execute(
            update(Account)
            .where(ID_COLUMN[crm].is_not(None))
            .values(
                health_score=((Account.id + shift) % 90) + 5,
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


def served_by_status(info: dict[str, Any]) -> dict[str, int]:
    """Requests the sandbox answered so far, by HTTP status (429s included)."""
    with requests.Session() as session:
        session.trust_env = False
        stats = session.get(f"{info['control_url']}/stats", verify=info["ca_file"], timeout=30)
    stats.raise_for_status()
    out: dict[str, int] = {}
    for routes in stats.json()["calls"].values():
        for counts in routes.values():
            for status, n in counts.items():
                out[str(status)] = out.get(str(status), 0) + int(n)
    return out


def push(
    info: dict[str, Any], env: dict[str, str], crm: str
) -> tuple[float, float, dict[str, Any], int, int]:
    """One measured push; also the requests the sandbox answered during it, all of them and
    those it accepted (not refused with a 429). The run row counts every request, the
    target-field check's included."""
    cmd = [sys.executable, "-m", "app.cli.main", "push", "--crm", crm, "--object", OBJECT[crm]]
    before = served_by_status(info)
    secs, rss, out = run_measured(cmd, env)
    after = served_by_status(info)
    served = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(served.values())
    # Refused for the rate: HubSpot's 429, Salesforce's 403 REQUEST_LIMIT_EXCEEDED (the only
    # 403s of a benchmark run).
    refused = served.get("429", 0) + served.get("403", 0)
    return secs, rss, json.loads(out)["runs"][0], total, total - refused


def set_faults(info: dict[str, Any], routes: list[dict[str, Any]]) -> None:
    with requests.Session() as session:
        session.trust_env = False
        answer = session.put(
            f"{info['control_url']}/faults",
            json={"routes": routes, "seed": 7},
            verify=info["ca_file"],
            timeout=30,
        )
    answer.raise_for_status()


#: Write routes a 10 %-429 run refuses on (sandbox fault globs): the Salesforce Bulk ingest job's
#: requests and Collections, HubSpot batch writes.
WRITE_ROUTES = {
    "salesforce": ["*/jobs/ingest*", "*/composite/sobjects*"],
    "hubspot": ["POST /crm/v3/objects/companies/batch/*"],
}


def bench_crm(
    info: dict[str, Any], workdir: Path, crm: str, naive: int, faults: bool = True
) -> list[dict[str, Any]]:
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
    secs, rss, first, served, accepted = push(info, env, crm)
    floor = planned_calls(crm, changed, 0)  # type: ignore[arg-type]
    rows = [
        {
            "crm": crm,
            "path": "crmsync push, every account changed",
            "records": first["updated"] + first["created"],
            "secs": secs,
            "calls": first["api_calls"],
            "planned": first["planned_calls"],
            "served": served,
            "accepted": accepted,
            "floor": floor,
            "rss": rss,
        }
    ]
    secs2, rss2, second, served2, accepted2 = push(info, env, crm)
    rows.append(
        {
            "crm": crm,
            "path": "crmsync push again, nothing changed",
            "records": second["updated"] + second["created"],
            "secs": secs2,
            "calls": second["api_calls"],
            "planned": second["planned_calls"],
            "served": served2,
            "accepted": accepted2,
            "floor": 0,
            "rss": rss2,
        }
    )
    if faults:
        # The same push with 10 % of the write requests refused with a 429 (retried): every
        # refused request is a call, so calls / floor is about 1 / 0.9; the accepted ones stay
        # at the floor.
        changed = change_every_account(url, crm, shift=3)
        write_routes = WRITE_ROUTES[crm]
        set_faults(info, [{"match": m, "rate_limit": 0.1} for m in write_routes])
        try:
            secs3, rss3, third, served3, accepted3 = push(info, env, crm)
        finally:
            set_faults(info, [])
        rows.append(
            {
                "crm": crm,
                "path": "crmsync push, every account changed, 10 % 429s",
                "records": third["updated"] + third["created"],
                "secs": secs3,
                "calls": third["api_calls"],
                "planned": third["planned_calls"],
                "served": served3,
                "accepted": accepted3,
                "floor": floor,
                "rss": rss3,
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
            "planned": changed,
            "served": changed,
            "accepted": changed,
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
    parser.add_argument(
        "--no-faults", action="store_true", help="Leave out the push with 10 %% 429s."
    )
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
                rows += bench_crm(info, workdir, crm, args.naive, faults=not args.no_faults)
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
        "planned",
        "requests (sandbox)",
        "accepted",
        "floor",
        "calls / floor",
        "accepted / floor",
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
            f"{r['planned']:,}",
            f"{r['served']:,}",
            f"{r['accepted']:,}",
            f"{r['floor']:,}",
            f"{r['calls'] / r['floor']:.2f}" if r["floor"] else "-",
            f"{r['accepted'] / r['floor']:.2f}" if r["floor"] else "-",
            "-" if r["rss"] != r["rss"] else f"{r['rss']:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
