"""Console benchmark: every console page's p95 response time at 100,000 accounts and 1,000,000
health snapshots on SQLite (issue #21 item 4: every page p95 < 300 ms).

The data is built fast with bulk inserts of its own (:mod:`app.db.bulk`, through
:func:`bench.recompute._load`) into a temporary SQLite database migrated to head: 100 CSMs,
100,000 accounts with computed health, tier, renewal and lifecycle, and 1,000,000 snapshots:
2,000 accounts with a snapshot every day of the last 365 (the chart's worst case: 730,000 rows)
and ~2.7 for each other account; 1,000 onboarding plans (``create_plan_once``, 7.2's tasks), and
1,000 accounts changed on the CS side (to push: the preview plans all 1,000 for its exact call
count on every page, and lists a page of 50).

Each page is then requested through the whole app in-process (``TestClient``: routing, session
cookie, role, templates; no network), signed in as an admin, ``--requests`` times with varied
parameters (random accounts, filters, searches, next pages), after one warm-up request. Beside
it, measured in the same run on the same data: ``GET /api/v1/accounts`` (the JSON API's page of
50) and the bare ``SELECT`` of that page (SQLAlchemy Core, no HTTP): the baseline column.

Run: ``.venv/bin/python -m bench.console [--accounts N] [--snapshots N] [--requests N]``;
``make bench`` runs it with the defaults.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, select, update

from app.console.pages.push_preview import PAGE_SIZE as PUSH_PAGE
from app.core.access import Role
from app.db.api_keys import create_key
from app.db.engine import make_session_factory
from app.db.migrate import upgrade
from app.db.models import Account
from app.db.onboarding_store import create_plan_once
from app.domain.onboarding import build_plan
from app.main import create_app
from app.settings import Settings
from bench.recompute import _load

TODAY = datetime.now(UTC).date()
NOW = datetime.now(UTC)
TARGET_MS = 300.0
PUSH_PAGES = 1_000 // PUSH_PAGE  # the pages of the 1,000 changed accounts' records
DAILY_ACCOUNTS = 2_000
WORDS = (
    "acme", "globex", "initech", "umbrella", "stark", "wayne", "wonka", "tyrell", "cyberdyne",
    "hooli", "pied", "vandelay", "soylent", "massive", "aperture", "black", "blue", "north",
    "south", "prime", "delta", "omega", "nova", "zen", "atlas", "orbit", "vertex", "summit",
)  # fmt: skip
BANDS = ("green", "green", "yellow", "red", "unknown")
TIERS = ("key", "high", "low", "low", "tech")
WINDOWS = ("outside", "upcoming", "in_window", "overdue", "none")
STAGES = ("onboarding", "adoption", "steady", "renewal", "expansion")


def _doc(score: int) -> dict[str, Any]:
    """A snapshot's components document of the recompute's shape (the account page reads it)."""
    comp = {
        name: {
            "value": float(max(0, min(100, score + delta))),
            "status": "ok",
            "weight": weight,
            "subscores": {"a": 50.0, "b": 70.0},
            "inputs": {"active_users_30d": 12, "licensed_seats": 20, "days": 14},
            "flags": [],
        }
        for name, weight, delta in (
            ("usage", 30, 5),
            ("engagement", 15, -10),
            ("sentiment", 15, 0),
            ("support", 10, 20),
            ("relationship", 10, -30),
            ("value", 10, 10),
            ("payment", 10, 15),
        )
    }
    return {
        "components": comp,
        "reasons": [
            {"code": "no_touch", "text": "No two-way contact for 120 days (cadence 90)"},
            {"code": "low_seats", "text": "12 of 40 seats active"},
        ],
        "trend_delta": -3,
        "caps": [],
        "uncapped_band": None,
        "loyalty_type": "true",
    }


def _accounts(n: int, csms: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        score = rng.randint(5, 98)
        name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {i}"
        yield {
            "id": i,
            "name": name,
            "domain": f"{name.split()[0].lower()}{i}.example",
            "csm_id": rng.randint(1, csms),
            "arr": Decimal(rng.choice((2_000, 12_000, 30_000, 150_000))),
            "licensed_seats": 40,
            "customer_since_on": TODAY - timedelta(days=rng.randint(30, 1500)),
            "health_score": score,
            "health_band": rng.choice(BANDS),
            "health_trend": rng.choice(("up", "flat", "down", "new")),
            "health_reasons": "No two-way contact for 120 days (cadence 90); 12 of 40 seats",
            "health_coverage": 90,
            "loyalty_type": "true",
            "false_loyalty": False,
            "health_computed_at": NOW,
            "tier": rng.choice(TIERS),
            "renewal_on": TODAY + timedelta(days=rng.randint(-30, 400)),
            "renewal_status": rng.choice(WINDOWS),
            "renewal_risk": rng.choice(("low", "medium", "high", "critical")),
            "lifecycle_stage": rng.choice(STAGES),
            "lifecycle_entered_at": NOW,
            "flags": [],
            "hs_id": str(10_000_000 + i),
        }


def _snapshots(n: int, total: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """365 daily snapshots for the first DAILY_ACCOUNTS accounts, the rest spread over the
    others (distinct days) until ``total``."""
    row = 0
    small = {"components": {}, "reasons": []}
    daily = min(DAILY_ACCOUNTS, n)
    for account in range(1, daily + 1):
        score = rng.randint(20, 90)
        for back in range(365, 0, -1):
            if rng.random() < 0.03:  # a day without a recompute: a gap
                continue
            row += 1
            score = max(0, min(100, score + rng.randint(-3, 3)))
            band = "green" if score >= 70 else "yellow" if score >= 40 else "red"
            yield {
                "id": row,
                "account_id": account,
                "computed_on": TODAY - timedelta(days=back - 1),
                "computed_at": NOW,
                "score": score,
                "band": band,
                "coverage": 90,
                "components": _doc(score) if back == 1 else small,
                "flags": [],
                "reasons": None,
                "model_version": "bench",
            }
    others = max(n - daily, 1)
    per = max((total - row) // others, 1)
    for account in range(daily + 1, n + 1):
        days = sorted(rng.sample(range(365), per + (1 if rng.random() < 0.7 else 0)))
        for back in days:
            if row >= total:
                return
            row += 1
            score = rng.randint(5, 98)
            yield {
                "id": row,
                "account_id": account,
                "computed_on": TODAY - timedelta(days=back),
                "computed_at": NOW,
                "score": score,
                "band": "green" if score >= 70 else "yellow" if score >= 40 else "red",
                "coverage": 90,
                "components": _doc(score) if back == days[0] else small,
                "flags": [],
                "reasons": None,
                "model_version": "bench",
            }


def _csms(n: int) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        yield {
            "id": i,
            "name": f"CSM {i:03d}",
            "email": f"csm{i}@example.com",
            "tiers": [],
            "capacity_units": 100,
            "is_pool": False,
            "active": True,
        }


def generate(url: str, accounts: int, snapshots: int, seed: int = 21) -> dict[str, float]:
    rng = random.Random(seed)
    started = time.perf_counter()
    upgrade(url)
    _load(url, "csms", _csms(100))
    _load(url, "accounts", _accounts(accounts, 100, rng))
    made = _load(url, "health_snapshots", _snapshots(accounts, snapshots, rng))
    engine = create_engine(url)
    factory = make_session_factory(engine)
    with factory() as s, s.begin():
        for _ in range(1_000):  # onboarding plans, the older ones with late tasks
            account_id = rng.randint(1, accounts)
            d0 = TODAY - timedelta(days=rng.randint(0, 120))
            tier = rng.choice(("key", "high", "low", "tech"))
            decision = build_plan(tier, "new_business", d0, d0, handover=None)  # type: ignore[arg-type]
            create_plan_once(
                s,
                account_id=account_id,
                opportunity_id=None,
                decision=decision,
                csm_id=rng.randint(1, 100),
            )
        # 1,000 accounts changed on the CS side since the last push
        s.execute(
            update(Account)
            .where(Account.id <= 1_000)
            .values(
                cs_changed_at=NOW,
                field_stamps={"health_score": NOW.isoformat(), "health_band": NOW.isoformat()},
            )
        )
    engine.dispose()
    return {"generated_s": time.perf_counter() - started, "snapshots": float(made)}


def _sign_in(client: TestClient, app: Any) -> None:
    with app.state.session_factory() as session:
        _row, key = create_key(session, name="bench-admin", role=Role.ADMIN)
        session.commit()
    page = client.get("/console/sign-in")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post(
        "/console/sign-in",
        data={"api_key": key, "csrf_token": token, "next": "/console/status"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    client.headers["Authorization"] = f"Bearer {key}"  # the JSON API baseline


def _timed(fn: Callable[[], Any], times: int) -> list[float]:
    fn()  # warm-up: templates compiled, caches filled
    out = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(url: str, tmp: Path, accounts: int, requests: int) -> list[dict[str, Any]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        data_dir=tmp,
        hubspot_base_url="https://127.0.0.1:9",  # never called: the preview reads the database
        hubspot_access_token="pat-bench",
        webhooks={"embedded_worker": False},
    )
    app = create_app(settings)
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    with TestClient(app) as client:
        _sign_in(client, app)

        def get(path_fn: Callable[[], str], expect: int = 200) -> Callable[[], Any]:
            def call() -> Any:
                path = path_fn()
                answer = client.get(path)
                assert answer.status_code == expect, (path, answer.status_code, answer.text[:300])
                return answer

            return call

        first = client.get("/api/v1/accounts?limit=50").json()
        engine = create_engine(url)

        def bare_select() -> None:
            with engine.connect() as conn:
                list(conn.execute(select(Account.__table__).where(
                    Account.deleted_at.is_(None), Account.id > 0
                ).order_by(Account.id).limit(51)))  # fmt: skip

        def filtered() -> str:
            params = [
                f"band={rng.choice(('green', 'yellow', 'red', 'unknown'))}",
                f"tier={rng.choice(('key', 'high', 'low', 'tech'))}",
                f"renewal_window={rng.choice(WINDOWS)}",
                f"lifecycle_stage={rng.choice(STAGES)}",
                f"csm_id={rng.randint(1, 100)}",
            ]
            return "/console/accounts?" + "&".join(rng.sample(params, rng.randint(1, 3)))

        def search() -> str:
            return f"/console/accounts?q={rng.choice(WORDS)[: rng.randint(2, 5)]}"

        def next_page() -> str:
            return f"/console/accounts?cursor={first['next_cursor']}"

        cases: list[tuple[str, Callable[[], Any]]] = [
            ("baseline: bare SELECT of the page (50)", bare_select),
            ("baseline: GET /api/v1/accounts (50)", get(lambda: "/api/v1/accounts?limit=50")),
            ("/console/accounts", get(lambda: "/console/accounts")),
            ("/console/accounts next page", get(next_page)),
            ("/console/accounts 1-3 filters", get(filtered)),
            ("/console/accounts?q= search", get(search)),
            (
                "/console/accounts/{id} (365 daily)",
                get(lambda: f"/console/accounts/{rng.randint(1, min(DAILY_ACCOUNTS, accounts))}"),
            ),
            (
                "/console/accounts/{id} (any)",
                get(lambda: f"/console/accounts/{rng.randint(1, accounts)}"),
            ),
            (
                "baseline: GET /api/v1/onboarding (20 plans, late first)",
                get(lambda: "/api/v1/onboarding?status=active&limit=20&order=due"),
            ),
            ("/console/onboarding", get(lambda: "/console/onboarding")),
            (
                "/console/onboarding?csm=",
                get(lambda: f"/console/onboarding?csm={rng.randint(1, 100)}"),
            ),
            (
                "baseline: GET /api/v1/push/preview (1,000 changed)",
                get(lambda: f"/api/v1/push/preview?crm=hubspot&limit={PUSH_PAGE}"),
            ),
            ("/console/push?crm=hubspot (1,000 changed)", get(lambda: "/console/push?crm=hubspot")),
            (
                "/console/push?crm=hubspot&page= (any page)",
                get(lambda: f"/console/push?crm=hubspot&page={rng.randint(2, PUSH_PAGES)}"),
            ),
            ("/console/status", get(lambda: "/console/status")),
            ("/console/runs", get(lambda: "/console/runs")),
            ("/console/errors", get(lambda: "/console/errors")),
            ("/console/inbox", get(lambda: "/console/inbox")),
            ("/console/keys", get(lambda: "/console/keys")),
        ]
        for name, fn in cases:
            times = _timed(fn, requests)
            rows.append(
                {
                    "page": name,
                    "n": len(times),
                    "p50": statistics.median(times),
                    "p95": _p95(times),
                    "max": max(times),
                }
            )
        engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", "--console-accounts", dest="accounts", type=int,
                        default=100_000)  # fmt: skip
    parser.add_argument("--snapshots", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    args, _others = parser.parse_known_args()  # `python -m bench` passes the pull's options too
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'console.db'}"
        info = generate(url, args.accounts, args.snapshots)
        rows = measure(url, Path(tmp), args.accounts, args.requests)
    baseline = next(r for r in rows if r["page"].startswith("baseline: GET"))
    table = Table(
        title=f"console pages, SQLite, {args.accounts:,} accounts, "
        f"{int(info['snapshots']):,} health snapshots ({args.requests} requests each)"
    )
    for column in ("page", "p50 ms", "p95 ms", "max ms", "p95 x API page", "p95 < 300 ms"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["page"],
            f"{row['p50']:.1f}",
            f"{row['p95']:.1f}",
            f"{row['max']:.1f}",
            f"{row['p95'] / baseline['p95']:.2f}",
            "-" if row["page"].startswith("baseline") else
            ("yes" if row["p95"] < TARGET_MS else "NO"),
        )  # fmt: skip
    console.print(table)
    console.print(f"data generated in {info['generated_s']:.1f} s (bulk inserts, SQLite)")


if __name__ == "__main__":
    main()
