"""Test harness for the Salesforce emulator: a SandboxContext and a real HTTPS server.

Clock, stats, faults and tokens are the core's own classes; the webhook outbox is a small fake
(same method name); the database is a real SQLite connection; the server is uvicorn on 127.0.0.1
with a trustme CA and a free port, so simple-salesforce talks to it unchanged.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import trustme
import uvicorn
from simple_salesforce import Salesforce
from starlette.applications import Starlette

from crmsync_sandbox.clock import Clock
from crmsync_sandbox.context import SandboxConfig, SandboxContext
from crmsync_sandbox.faults import Faults
from crmsync_sandbox.salesforce import SalesforceEmulator, build_emulator
from crmsync_sandbox.seed import SeedCompany, SeedDeal, SeedNote, SeedUser
from crmsync_sandbox.stats import Stats
from crmsync_sandbox.tokens import Tokens


class FakeOutbox:
    def __init__(self) -> None:
        self.salesforce: list[tuple[str, list[str]]] = []

    def emit_salesforce(self, object_name: str, ids: list[str]) -> None:
        self.salesforce.append((object_name, list(ids)))


# ---- a tiny seed plan with the SeedPlan shape (docs/sandbox-schema.md) ----------------------


BASE = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class TinyPlan:
    accounts: int
    now: datetime = field(default_factory=lambda: BASE + timedelta(days=400))

    def users(self) -> Iterator[SeedUser]:
        for i in range(1, 4):
            yield SeedUser(f"U{i:04d}", f"First{i}", f"Last{i}", f"user{i}@example.test", "csm")

    def companies(self) -> Iterator[SeedCompany]:
        for i in range(1, self.accounts + 1):
            yield SeedCompany(
                key=f"C{i:07d}",
                name=f"Company {i:05d}",
                domain=f"company{i}.example",
                industry="Software" if i % 2 else "Retail",
                country="DE",
                currency="EUR",
                arr=1000 * i,
                employees=10 * i,
                seats=i,
                plan="pro",
                owner_key="U0001",
                strategic=i % 3 == 0,
                created_at=BASE + timedelta(minutes=i),
                contract_start_on=date(2024, 1, 1),
                contract_end_on=None if i % 4 == 0 else date(2025, 1, 1),
            )

    def deals(self) -> Iterator[SeedDeal]:
        for i in range(1, self.accounts + 1):
            yield SeedDeal(
                key=f"D{i:07d}",
                company_key=f"C{i:07d}",
                name=f"Deal {i}",
                stage="closed_won" if i % 2 else "prospecting",
                amount=500 * i,
                close_on=date(2024, 6, 1),
                type="new_business",
                term_months=12,
                owner_key="U0002",
                preassigned_csm_email=None,
                created_at=BASE + timedelta(minutes=i),
            )

    def notes(self) -> Iterator[SeedNote]:
        for i in range(1, self.accounts + 1, 2):
            yield SeedNote(
                key=f"N{i:07d}",
                company_key=f"C{i:07d}",
                deal_key=f"D{i:07d}",
                title=f"Handover: Deal {i}",
                body=f"Handover: Deal {i}\nOpportunity: {{opportunity_id}}\n",
                author_key="U0002",
                created_at=BASE + timedelta(minutes=i),
            )


# ---- context and server ---------------------------------------------------------------------


def make_context(**config: Any) -> SandboxContext:
    cfg = SandboxConfig(**config)
    db = sqlite3.connect(":memory:", check_same_thread=False)
    return SandboxContext(
        config=cfg,
        db=db,
        lock=threading.RLock(),
        clock=Clock(),
        stats=Stats(),
        faults=Faults(),
        tokens=Tokens(cfg),
        outbox=FakeOutbox(),  # type: ignore[arg-type]
    )


@dataclass
class Server:
    ctx: SandboxContext
    emulator: SalesforceEmulator
    url: str
    port: int
    ca_file: str
    sessions: list[requests.Session] = field(default_factory=list)

    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers["Connection"] = "close"  # no idle keep-alive left to delay server shutdown
        self.sessions.append(s)
        s.trust_env = False
        s.verify = self.ca_file
        return s

    def client(self, token: str | None = None) -> Salesforce:
        return Salesforce(
            instance_url=self.url,
            session_id=token or self.ctx.config.sf_access_token,
            session=self.session(),
        )

    @property
    def outbox(self) -> FakeOutbox:
        out = self.ctx.outbox
        assert isinstance(out, FakeOutbox)
        return out


@contextmanager
def serve(tmp: Path, *, accounts: int = 0, **config: Any) -> Iterator[Server]:
    ctx = make_context(**config)
    emulator = build_emulator(ctx)
    ctx.emulators["salesforce"] = emulator
    if accounts:
        emulator.load_seed(TinyPlan(accounts))  # type: ignore[arg-type]
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")  # login host and My Domain-style instance
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    key_file = tmp / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(key_file))
    app = Starlette(routes=emulator.routes())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            ssl_certfile=str(key_file),
            log_level="warning",
            lifespan="off",
            ws="none",
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    running = Server(ctx, emulator, f"https://127.0.0.1:{port}", port, str(ca_file))
    try:
        yield running
    finally:
        for s in running.sessions:
            s.close()
        server.should_exit = True
        thread.join(10)
        sock.close()
        ctx.db.close()
