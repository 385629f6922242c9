"""``crmsync demo`` ends with health on the CRM records (issue #18 item 9): the generated
signals go in through the served API and the CSV import, the recompute pushes to both CRMs, the
demo reads the records back with simple-salesforce and hubspot-api-client and finds them equal
to the CS database, and prints a table per band and tier that matches the database it leaves
behind, with three example accounts and their reasons."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from pathlib import Path

from tests.acceptance.test_cli import base_env
from tests.support.cli import run_crmsync

ROW = re.compile(r"^[│|]\s*(green|yellow|red|unknown|total)\s*[│|](.*)[│|]\s*$")


def table_of(output: str) -> dict[str, list[int]]:
    out = {}
    for line in output.splitlines():
        match = ROW.match(line.strip())
        if match:
            out[match.group(1)] = [int(c) for c in re.split(r"[│|]", match.group(2))]
    return out


def test_demo_puts_health_on_both_crms_and_prints_it(tmp_path: Path) -> None:
    env = base_env("sqlite:///./var/crmsync.db")
    done = run_crmsync("demo", "--accounts", "20", env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stderr
    assert "POST http://127.0.0.1:" in out  # the API, served and called over HTTP
    assert "crmsync signals import var/demo-usage.csv --kind usage" in out
    assert (tmp_path / "var" / "demo-usage.csv").is_file()
    assert "(20 salesforce + 20 hubspot records)" in out
    assert "CRM values vs the CS database: all match" in out
    # The demo's narrative is not buried under the runs' INFO log lines (one per run start/end).
    assert "sync.run.start" not in out, out[:2000]
    steps = re.findall(r"^(\d+)\. ", out, flags=re.MULTILINE)
    assert steps == sorted(steps, key=int), steps
    assert len(steps) == len(set(steps)), steps

    table = table_of(out)
    assert set(table) == {"green", "yellow", "red", "unknown", "total"}
    with sqlite3.connect(tmp_path / "var" / "demo.db") as db:
        stored = Counter(
            (band, tier)
            for band, tier in db.execute(
                "SELECT health_band, tier FROM accounts WHERE deleted_at IS NULL"
            )
        )
        plans, ownerless = db.execute(
            "SELECT count(*), count(*) - count(csm_id) FROM onboarding_plans"
        ).fetchone()
        kinds = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("usage_snapshots", "support_tickets", "nps_responses", "invoices")
        }
    for band in ("green", "yellow", "red", "unknown"):
        expected = [stored[(band, tier)] for tier in ("key", "high", "low", "tech")]
        assert table[band] == [*expected, sum(expected)], band
        assert sum(expected) > 0, f"no {band} account"  # spread over every band
    assert table["total"][-1] == 40
    assert all(kinds.values()), kinds
    # Closed-won plans always have an owner: a CSM, the tech pool or the CS manager (fallback).
    assert plans > 0
    assert ownerless == 0

    examples = out[out.index("three accounts as Salesforce shows them") :]
    assert "(false loyalty;" in examples
    assert "(red;" in examples
    assert "(green;" in examples
    assert "false-loyalty risk" in examples
