"""Webhook benchmarks (#20 item 7), in one run:

1. **Ingest**: signed HubSpot deliveries of 100 events each against crmsync's
   ``POST /webhooks/hubspot`` (signature check, parse, one ``INSERT .. ON CONFLICT DO NOTHING``,
   commit, answer) and against a bare FastAPI endpoint that parses the same body and inserts the
   same rows with a plain ``INSERT`` (no signature, no dedupe): requests/s of each, same server
   setup (uvicorn in this process, SQLite files side by side), same client threads. Target: crmsync
   >= 70 % of the bare endpoint.
2. **Delivery -> plan**: the sandbox closes ``rate`` HubSpot deals per second for ``seconds``
   (batch updates of ten, every 0.1 s); each close is a real, signed webhook (the sandbox sends
   them in deliveries of ten) to ``crmsync serve --with-worker`` on SQLite, in a process of its
   own with its embedded webhook worker (``--worker-threads``, default the setting's), which
   reads the deal, stores it and starts the onboarding; the sandbox runs in a process of its own
   too (the CRM is elsewhere in production) and this one only closes deals and measures.
   Latency = the plan's ``created_at`` - the moment the close was made. p50 and p99; lost = closed
   deals without a plan; duplicated = opportunities with more than one plan; and crmsync's CPU
   time per event (the serve process's user + system time while the closes are handled).
   Target: p99 < 2 s, 0 lost, 0 duplicated. ``--in-process`` runs the earlier shape: crmsync
   (uvicorn, 4 worker threads) and the sandbox in this process, sharing its GIL.

``python -m bench.webhooks`` runs the issue's figures (100 events/s for 60 s);
``--seconds 10`` is a quick look."""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.engine import make_engine
from app.db.models import Csm, OnboardingPlan, Opportunity, WebhookEvent
from app.settings import Settings, SyncSettings, WebhookSettings
from app.webhooks.signatures import hubspot_v3_signature

SECRET = "bench-app-secret"


def _serve(app: Any) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def _bare_app(database_url: str) -> FastAPI:
    """The floor: parse the JSON array, insert the same rows, answer."""
    engine = make_engine(database_url)
    app = FastAPI()
    table = WebhookEvent.__table__

    def store(rows: list[dict[str, Any]]) -> None:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)

    @app.post("/bare")
    async def bare(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        events = json.loads(await request.body())
        now = datetime.now(UTC)
        rows = [
            {
                "source": "hubspot",
                "external_id": f"{e['portalId']}:{e['subscriptionId']}:{e['eventId']}",
                "event_type": e["subscriptionType"],
                "object_id": str(e["objectId"]),
                "occurred_at": now,
                "received_at": now,
                "headers": {},
                "raw_body": json.dumps(e, separators=(",", ":")),
                "status": "received",
                "attempts": 0,
                "next_attempt_at": now,
            }
            for e in events
        ]
        await run_in_threadpool(store, rows)
        return JSONResponse({"received": len(rows)})

    return app


def _batch(start: int, size: int) -> bytes:
    now = int(time.time() * 1000)
    events = [
        {
            "eventId": start + n,
            "subscriptionId": 2001,
            "portalId": 62515,
            "appId": 3001,
            "occurredAt": now,
            "subscriptionType": "deal.propertyChange",
            "attemptNumber": 0,
            "objectId": 10_000 + start + n,
            "propertyName": "dealstage",
            "propertyValue": "closedwon",
            "changeSource": "CRM_UI",
        }
        for n in range(size)
    ]
    return json.dumps(events, separators=(",", ":")).encode()


def _drive(url: str, requests: int, threads: int, first_id: int, signed: bool) -> float:
    """Send ``requests`` batches of 100 from ``threads`` clients; returns requests/s."""
    bodies = [_batch(first_id + i * 100, 100) for i in range(requests)]

    def send(chunk: list[bytes]) -> None:
        with httpx.Client(timeout=60) as client:
            for body in chunk:
                headers = {"Content-Type": "application/json"}
                if signed:
                    ts = str(int(time.time() * 1000))
                    headers["X-HubSpot-Request-Timestamp"] = ts
                    headers["X-HubSpot-Signature-v3"] = hubspot_v3_signature(
                        SECRET, "POST", url, body, ts
                    )
                response = client.post(url, content=body, headers=headers)
                response.raise_for_status()

    chunks = [bodies[i::threads] for i in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, chunks))
    return requests / (time.perf_counter() - started)


def ingest(workdir: Path, requests: int, threads: int) -> dict[str, Any]:
    from app.main import create_app

    ours_url = f"sqlite:///{workdir / 'ingest-crmsync.db'}"
    bare_url = f"sqlite:///{workdir / 'ingest-bare.db'}"
    for url in (ours_url, bare_url):
        migrate.upgrade(url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=ours_url,
        hubspot_app_secret=SecretStr(SECRET),
        # Store and answer only, as the bare endpoint does: nothing processed, nothing queued
        # (and no job queue file made anywhere but the bench's own folder).
        webhooks=WebhookSettings(embedded_worker=False, enqueue_jobs=False),
        data_dir=workdir,
    )
    ours, ours_thread, ours_base = _serve(create_app(settings))
    bare, bare_thread, bare_base = _serve(_bare_app(bare_url))
    results: dict[str, list[float]] = {"crmsync": [], "bare": []}
    try:
        _drive(ours_base + "/webhooks/hubspot", 5, threads, 10_000_000, True)  # warm up
        _drive(bare_base + "/bare", 5, threads, 10_000_000, False)
        for round_no in range(3):
            first = round_no * requests * 100
            results["bare"].append(_drive(bare_base + "/bare", requests, threads, first, False))
            results["crmsync"].append(
                _drive(ours_base + "/webhooks/hubspot", requests, threads, first, True)
            )
    finally:
        for server, thread in ((ours, ours_thread), (bare, bare_thread)):
            server.should_exit = True
            thread.join(10)
    ours_rps = statistics.median(results["crmsync"])
    bare_rps = statistics.median(results["bare"])
    return {
        "requests_per_round": requests,
        "events_per_request": 100,
        "client_threads": threads,
        "crmsync_rps": round(ours_rps, 1),
        "bare_rps": round(bare_rps, 1),
        "ratio": round(ours_rps / bare_rps, 3),
        "target_ratio": 0.7,
        "rounds": {k: [round(v, 1) for v in vs] for k, vs in results.items()},
    }


def _hs(session: Any, base: str, token: str, method: str, path: str, body: Any) -> Any:
    response = session.request(
        method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    response.raise_for_status()
    return response.json() if response.content else None


def _seed(url: str) -> Any:
    """Migrate ``url`` and add the bench's CSMs (room for every plan) and a tech pool."""
    migrate.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s:
        for n, tiers in enumerate((["key", "high"], ["high", "low"], ["low"], ["low"])):
            s.add(
                Csm(
                    name=f"CSM {n}",
                    email=f"csm{n}@bench.example",
                    tiers=tiers,
                    capacity_units=100_000,
                )
            )
        s.add(Csm(name="Pool", email="pool@bench.example", tiers=["tech"], is_pool=True))
        s.commit()
    return engine


def _open_deals(http: Any, base: str, token: str, total: int) -> list[str]:
    """``total`` open new-business deals spread over the first 100 companies."""
    companies = _hs(http, base, token, "GET", "/crm/v3/objects/companies?limit=100", None)
    company_ids = [c["id"] for c in companies["results"]]
    deals: list[str] = []
    for start in range(0, total, 100):
        inputs = [
            {
                "properties": {
                    "dealname": f"bench deal {start + n}",
                    "amount": str(5_000 + 97 * ((start + n) % 400)),
                    "closedate": "2026-12-04T00:00:00.000Z",
                    "dealstage": "contractsent",
                    "pipeline": "default",
                    "dealtype": "newbusiness",
                },
                "associations": [
                    {
                        "to": {"id": company_ids[(start + n) % len(company_ids)]},
                        "types": [
                            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}
                        ],
                    }
                ],
            }
            for n in range(min(100, total - start))
        ]
        made = _hs(
            http, base, token, "POST", "/crm/v3/objects/deals/batch/create", {"inputs": inputs}
        )
        deals.extend(str(r["id"]) for r in made["results"])
    return deals


def _close_at_rate(
    http: Any, base: str, token: str, deals: list[str], rate: int
) -> tuple[dict[str, float], float]:
    """Close ``deals`` at ``rate`` per second (batch updates of ten every 10 / rate s); returns
    when each was closed and how long the closing took."""
    closed_at: dict[str, float] = {}
    step = 10
    interval = step / rate
    started = time.time()
    for n, start in enumerate(range(0, len(deals), step)):
        due = started + n * interval
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        chunk = deals[start : start + step]
        body = {"inputs": [{"id": d, "properties": {"dealstage": "closedwon"}} for d in chunk]}
        _hs(http, base, token, "POST", "/crm/v3/objects/deals/batch/update", body)
        now = time.time()
        for deal in chunk:
            closed_at[deal] = now
    return closed_at, time.time() - started


def _wait_for_plans(engine: Any, total: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Session(engine) as s:
            plans = s.scalar(select(func.count()).select_from(OnboardingPlan)) or 0
        if plans >= total:
            return
        time.sleep(0.5)


def latency(workdir: Path, rate: int, seconds: int) -> dict[str, Any]:
    """Delivery -> plan with everything in this process (uvicorn, the worker, the sandbox)."""
    from app.main import create_app
    from crmsync_sandbox import Sandbox, SandboxConfig

    total = rate * seconds
    url = f"sqlite:///{workdir / 'latency.db'}"
    engine = _seed(url)
    with Sandbox(SandboxConfig(accounts=200, seed=7, hs_rate_limits=False)) as sb:
        hs = sb.info.hubspot
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            hubspot_base_url=hs.base_url,
            hubspot_access_token=SecretStr(hs.access_token),
            hubspot_app_secret=SecretStr(hs.app_secret),
            ca_bundle=sb.info.ca_file,
            sync=SyncSettings(lookback_seconds=0),
            webhooks=WebhookSettings(embedded_worker=True, worker_threads=4, sweep_seconds=1),
        )
        http = sb.session()
        deals = _open_deals(http, hs.base_url, hs.access_token, total)
        server, thread, base = _serve(create_app(settings))
        sb.control(
            "PUT",
            "/webhooks",
            {"hubspot_url": base + "/webhooks/hubspot", "batch_size": 10, "backoff_base_s": 0.5},
        )
        try:
            closed_at, send_seconds = _close_at_rate(
                http, hs.base_url, hs.access_token, deals, rate
            )
            _wait_for_plans(engine, total)
        finally:
            server.should_exit = True
            thread.join(30)
            http.close()
    return _summary(engine, deals, closed_at, rate, seconds, send_seconds)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency_processes(workdir: Path, rate: int, seconds: int, threads: int) -> dict[str, Any]:
    """Delivery -> plan as the target states it: ``crmsync serve --with-worker`` (the embedded
    webhook worker, ``threads`` threads) in a process of its own, the sandbox in another (as the
    CRM is elsewhere in production), this process only closing deals and measuring."""
    import requests

    import app
    from bench.pull import start_sandbox

    total = rate * seconds
    url = f"sqlite:///{workdir / 'latency-processes.db'}"
    engine = _seed(url)
    sandbox, info = start_sandbox(workdir, 200)
    serve: subprocess.Popen[bytes] | None = None
    http = requests.Session()
    http.trust_env = False
    http.verify = info["ca_file"]
    try:
        hs = info["hubspot"]
        deals = _open_deals(http, hs["base_url"], hs["access_token"], total)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        env.update(
            {
                "CRMSYNC_DATABASE_URL": url,
                "CRMSYNC_HUBSPOT_BASE_URL": hs["base_url"],
                "CRMSYNC_HUBSPOT_ACCESS_TOKEN": hs["access_token"],
                "CRMSYNC_HUBSPOT_APP_SECRET": hs["app_secret"],
                "CRMSYNC_CA_BUNDLE": info["ca_file"],
                "CRMSYNC_SYNC__LOOKBACK_SECONDS": "0",
                "CRMSYNC_WEBHOOKS__EMBEDDED_WORKER": "true",
                "CRMSYNC_WEBHOOKS__WORKER_THREADS": str(threads),
                "CRMSYNC_WEBHOOKS__SWEEP_SECONDS": "1",
                "CRMSYNC_LOG_LEVEL": "WARNING",
                # the app this bench imports, whatever the venv's editable install points at
                "PYTHONPATH": str(Path(app.__file__).resolve().parents[1]),
            }
        )
        command = [sys.executable, "-m", "app.cli.main", "serve", "--port", str(port)]
        with (workdir / "serve.log").open("wb") as log:
            serve = subprocess.Popen(
                [*command, "--with-worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if serve.poll() is not None or time.time() > deadline:
                raise SystemExit(
                    f"crmsync serve did not start:\n{(workdir / 'serve.log').read_text()}"
                )
            time.sleep(0.2)
        response = http.put(
            info["control_url"] + "/webhooks",
            json={
                "hubspot_url": base + "/webhooks/hubspot",
                "batch_size": 10,
                "backoff_base_s": 0.5,
            },
            timeout=30,
        )
        response.raise_for_status()
        cpu_before = _cpu_seconds(serve.pid)
        closed_at, send_seconds = _close_at_rate(
            http, hs["base_url"], hs["access_token"], deals, rate
        )
        _wait_for_plans(engine, total)
        cpu = _cpu_seconds(serve.pid) - cpu_before
    finally:
        http.close()
        for proc in (serve, sandbox):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    result = _summary(engine, deals, closed_at, rate, seconds, send_seconds)
    result["setup"] = f"crmsync serve --with-worker ({threads} webhook threads), sandbox apart"
    result["crmsync_cpu_ms_per_event"] = round(1000 * cpu / total, 2)
    return result


def _summary(
    engine: Any,
    deals: list[str],
    closed_at: dict[str, float],
    rate: int,
    seconds: int,
    send_seconds: float,
) -> dict[str, Any]:
    """Delivery -> plan delays of ``deals`` closed at ``closed_at``; lost and duplicated plans."""
    total = len(deals)
    with Session(engine) as s:
        rows = s.execute(
            select(Opportunity.hs_id, OnboardingPlan.created_at).join(
                OnboardingPlan, OnboardingPlan.opportunity_id == Opportunity.id
            )
        ).all()
        statuses = dict(
            s.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)).all()
        )
    per_deal: dict[str, list[float]] = {}
    for hs_id, created in rows:
        per_deal.setdefault(str(hs_id), []).append(created.timestamp())
    delays = sorted(
        min(times) - closed_at[deal] for deal, times in per_deal.items() if deal in closed_at
    )
    lost = [d for d in deals if d not in per_deal]
    duplicated = [d for d, times in per_deal.items() if len(times) > 1]

    def pct(p: float) -> float | None:
        if not delays:
            return None
        return round(delays[min(len(delays) - 1, int(p * len(delays)))], 3)

    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "closed": total,
        "send_seconds": round(send_seconds, 1),
        "plans": len(per_deal),
        "p50_s": pct(0.50),
        "p99_s": pct(0.99),
        "max_s": round(delays[-1], 3) if delays else None,
        "lost": len(lost),
        "duplicated": len(duplicated),
        "inbox": statuses,
        "target_p99_s": 2.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--rate", type=int, default=100, help="closed-won events per second")
    parser.add_argument("--seconds", type=int, default=60, help="how long, at that rate")
    parser.add_argument("--requests", type=int, default=100, help="ingest requests per round")
    parser.add_argument("--threads", type=int, default=8, help="ingest client threads")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="delivery -> plan with crmsync and the sandbox in this process (one GIL for all, "
        "as before) instead of crmsync serve --with-worker and the sandbox in their own",
    )
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=WebhookSettings().worker_threads,
        help="CRMSYNC_WEBHOOKS__WORKER_THREADS of crmsync serve (default: the setting's default)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crmsync-bench-webhooks-") as tmp:
        workdir = Path(tmp)
        report: dict[str, Any] = {"ingest": ingest(workdir, args.requests, args.threads)}
        print(json.dumps({"webhooks": report}, indent=2), flush=True)
        if not args.skip_latency:
            if args.in_process:
                report["delivery_to_plan"] = latency(workdir, args.rate, args.seconds)
            else:
                report["delivery_to_plan"] = latency_processes(
                    workdir, args.rate, args.seconds, args.worker_threads
                )
            print(json.dumps({"webhooks": report}, indent=2), flush=True)


if __name__ == "__main__":
    main()
