"""Push planner benchmark: plan 100,000 accounts with nothing changed (issue #17 item 11).

Target: <= 1 s. The ledger is given as the push store builds it (a ``LedgerIndex``, one entry
per outbound field per account, all agreed); the rows are dicts as the store reads them. Run:
``.venv/bin/python -m bench.push_plan [--plan-accounts N] [--repeat R]`` (``make bench`` runs
it after the pull benchmark); prints one JSON row.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from datetime import date
from typing import Any

from app.mappers.defaults import salesforce_mappings
from app.mappers.ledger import LedgerEntry
from app.mappers.push_plan import LedgerIndex, plan_push

TODAY = date(2026, 12, 6)


def accounts(n: int) -> list[dict[str, Any]]:
    bands, trends, risks = ("green", "yellow", "red"), ("up", "flat", "down"), ("low", "high")
    return [
        {
            "id": i,
            "sf_id": f"001{i:015d}",
            "crmsync_id": None,
            "health_score": i % 101,
            "health_band": bands[i % 3],
            "health_trend": trends[i % 3],
            "health_reasons": f"usage {i % 500}",
            "tier": ("key", "high", "low")[i % 3],
            "renewal_on": date(2027, 1 + i % 12, 1 + i % 28),
            "renewal_risk": risks[i % 2],
            "field_stamps": {},
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-accounts", dest="accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args, _others = parser.parse_known_args()  # `python -m bench` passes the pull's too
    mapping = salesforce_mappings().object("Account")
    rows = accounts(args.accounts)
    first = plan_push(mapping, rows, {}, today=TODAY)  # everything never pushed
    ledger = LedgerIndex()
    for record in first.records:
        for change in record.changes:
            entry = LedgerEntry(change.new_hash, change.new_hash, change.new)
            ledger.add(str(record.crm_id), change.crm_field, entry)
    del first
    gc.collect()
    times = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        plan = plan_push(mapping, rows, ledger, today=TODAY)
        times.append(time.perf_counter() - began)
        assert not plan.records, "every account was agreed"
    print(
        json.dumps(
            {
                "bench": "push planner, nothing changed",
                "accounts": args.accounts,
                "fields": len(ledger),
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "target_s": 1.0,
            }
        )
    )


if __name__ == "__main__":
    main()
