"""Test harness for the HubSpot emulator: a minimal SandboxContext and a real HTTPS server.

Clock, stats, faults and tokens are the core's own classes (as in salesforce_harness.py); the
webhook outbox is a small fake (same method name) that keeps the events for assertions; the
database is a real SQLite connection; the server is uvicorn on
127.0.0.1 with a trustme CA and a free port, so hubspot-api-client talks to it unchanged.
"""

from __future__ import annotations

import gc
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import hubspot
import trustme
import uvicorn
from starlette.applications import Starlette

from crmsync_sandbox.clock import Clock
from crmsync_sandbox.context import SandboxConfig, SandboxContext
from crmsync_sandbox.faults import Faults
from crmsync_sandbox.hubspot import HubSpotEmulator, build_emulator
from crmsync_sandbox.seed import SeedDeal as Deal
from crmsync_sandbox.seed import SeedNote as Note
from crmsync_sandbox.stats import Stats
from crmsync_sandbox.tokens import Tokens

TIMEOUT = (5, 30)


class FakeOutbox:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit_hubspot(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


# -- a small seed plan with the fields of crmsync_sandbox/seed.py ----------------------------------


@dataclass(frozen=True)
class User:
    key: str
    first_name: str
    last_name: str
    email: str
    role: str = "sales"


@dataclass(frozen=True)
class Company:
    key: str
    name: str
    domain: str
    industry: str
    country: str
    arr: int
    employees: int
    seats: int
    plan: str
    owner_key: str
    strategic: bool
    created_at: datetime
    contract_start_on: date | None
    contract_end_on: date | None
    currency: str = "EUR"


BASE = datetime(2024, 1, 1, tzinfo=UTC)
STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")


@dataclass
class MiniPlan:
    """``accounts`` companies, two deals each, one note per closed-won deal."""

    accounts: int = 30
    _users: list[User] = field(default_factory=list)

    def users(self) -> list[User]:
        return [
            User(f"U{i:04d}", f"First{i}", f"Last{i}", f"user{i}@example.test") for i in (1, 2, 3)
        ]

    def companies(self) -> list[Company]:
        out = []
        for i in range(1, self.accounts + 1):
            out.append(
                Company(
                    key=f"C{i:07d}",
                    name=f"Company {i} {'Alpha' if i % 2 else 'Beta'}",
                    domain=f"company{i}.test",
                    industry="COMPUTER_SOFTWARE" if i % 3 else "RETAIL",
                    country="Germany" if i % 2 else "France",
                    arr=1000 * i,
                    employees=10 * i,
                    seats=i,
                    plan="pro",
                    owner_key=f"U{(i % 3) + 1:04d}",
                    strategic=i % 5 == 0,
                    created_at=BASE + timedelta(hours=i),
                    contract_start_on=date(2024, 1, 1),
                    contract_end_on=None if i % 4 == 0 else date(2025, 1, 1),
                )
            )
        return out

    def deals(self) -> list[Deal]:
        out = []
        n = 0
        for i in range(1, self.accounts + 1):
            for j in range(2):
                n += 1
                out.append(
                    Deal(
                        key=f"D{n:07d}",
                        company_key=f"C{i:07d}",
                        name=f"Deal {n}",
                        stage=STAGES[n % len(STAGES)],
                        amount=100 * n,
                        close_on=date(2024, 6, 1),
                        type="new_business" if j == 0 else "renewal",
                        term_months=12,
                        owner_key="U0001",
                        preassigned_csm_email=None,
                        created_at=BASE + timedelta(hours=i, minutes=j),
                    )
                )
        return out

    def notes(self) -> list[Note]:
        out = []
        for d in self.deals():
            if d.stage == "closed_won":
                out.append(
                    Note(
                        key=f"N{int(d.key[1:]):07d}",
                        company_key=d.company_key,
                        deal_key=d.key,
                        title=f"Handover {d.name}",
                        body=f"Handover: {d.name}\nOpportunity: {{opportunity_id}}\n",
                        author_key="U0002",
                        created_at=d.created_at + timedelta(days=1),
                    )
                )
        return out


@dataclass
class Running:
    """One running HubSpot emulator and a client pointed at it."""

    em: HubSpotEmulator
    ctx: SandboxContext
    base_url: str
    ca_file: str
    clock: Clock
    stats: Stats
    faults: Faults
    outbox: FakeOutbox
    token: str

    def client(self, token: str | None = None) -> Any:
        return hubspot.HubSpot(
            access_token=token or self.token, host=self.base_url, ssl_ca_cert=self.ca_file
        )


def make_context(
    config: SandboxConfig,
) -> tuple[SandboxContext, Clock, Stats, Faults, FakeOutbox]:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    clock, stats, faults, outbox = Clock(), Stats(), Faults(), FakeOutbox()
    ctx = SandboxContext(
        config=config,
        db=db,
        lock=threading.RLock(),
        clock=clock,
        stats=stats,
        faults=faults,
        tokens=Tokens(config),
        outbox=outbox,  # type: ignore[arg-type]
    )
    return ctx, clock, stats, faults, outbox


@contextmanager
def serve(tmp: Path, config: SandboxConfig | None = None, plan: Any = None) -> Iterator[Running]:
    """Start the emulator (seeded with ``plan`` if given) over HTTPS; stop it on exit."""
    config = config or SandboxConfig(hs_rate_limits=False)
    ctx, clock, stats, faults, outbox = make_context(config)
    em = build_emulator(ctx)
    if plan is not None:
        em.load_seed(plan)
    tmp = Path(tempfile.mkdtemp(dir=tmp))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    app = Starlette(routes=em.routes())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            log_level="warning",
            lifespan="off",
            ws="none",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(
            em=em,
            ctx=ctx,
            base_url=f"https://127.0.0.1:{port}",
            ca_file=str(ca_file),
            clock=clock,
            stats=stats,
            faults=faults,
            outbox=outbox,
            token=config.hs_access_token,
        )
    finally:
        # Client pools that are no longer referenced must close their sockets first, or the
        # server's TLS shutdown waits for their close_notify.
        gc.collect()
        server.should_exit = True
        thread.join(timeout=10)
        ctx.db.close()


@contextmanager
def factory(tmp: Path) -> Iterator[Callable[..., Running]]:
    """For a fixture: start servers on demand, stop them after the test's frame is gone."""
    with ExitStack() as stack:

        def start(config: SandboxConfig | None = None, plan: Any = None) -> Running:
            return stack.enter_context(serve(tmp, config=config, plan=plan))

        yield start
