"""Sandbox fixtures: a running sandbox and clients pointed at it over verified HTTPS.

``sandbox`` (module scope) runs the real emulators; ``core_sandbox`` runs the core with small
fake emulators (defined here) so the core's tests do not depend on the emulators' progress.
``webhook_receiver`` is a plain-HTTP receiver on 127.0.0.1 that records what it is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import hubspot
import pytest
import requests
from simple_salesforce import Salesforce
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from crmsync_sandbox import Sandbox, SandboxConfig
from crmsync_sandbox.context import CrmName, SandboxContext
from crmsync_sandbox.seed import SeedPlan

# -- real emulators -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """Both real emulators, seeded with 30 accounts, on a free port (one per test module)."""
    with Sandbox(SandboxConfig(accounts=30, seed=42)) as sb:
        yield sb


@pytest.fixture
def sf_session(sandbox: Sandbox) -> Iterator[requests.Session]:
    """A requests session trusting the sandbox CA (trust_env off: REQUESTS_CA_BUNDLE is set)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = sandbox.info.ca_file
    yield s
    s.close()


@pytest.fixture
def salesforce_client(sandbox: Sandbox, sf_session: requests.Session) -> Salesforce:
    info = sandbox.info.salesforce
    return Salesforce(
        instance_url=info.instance_url,
        session_id=info.access_token,
        session=sf_session,
        version=info.api_version,
    )


@pytest.fixture
def hubspot_client(sandbox: Sandbox) -> hubspot.HubSpot:
    info = sandbox.info.hubspot
    return hubspot.HubSpot(
        access_token=info.access_token, host=info.base_url, ssl_ca_cert=sandbox.info.ca_file
    )


# -- fake emulators for the core's own tests ------------------------------------------------------


class FakeEmulator:
    """Just enough of a CRM to exercise the core: auth, one read, one write, the hooks."""

    def __init__(self, ctx: SandboxContext, name: CrmName) -> None:
        self.ctx = ctx
        self.name: CrmName = name
        self.seed_companies: list[str] = []
        self.closed_won: list[str] = []
        self.touched: list[tuple[str, list[str], datetime]] = []
        self.fields: list[tuple[str, str, str]] = []
        self.deleted: set[str] = set()
        self.rate_limit_resets = 0

    def _authorized(self, request: Request) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        return self.ctx.tokens.is_valid(self.name, token)

    def _unauthorized(self) -> Response:
        if self.name == "salesforce":
            body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            return JSONResponse(body, 401)
        return JSONResponse({"status": "error", "category": "INVALID_AUTHENTICATION"}, 401)

    async def read(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        return JSONResponse({"now": self.ctx.clock.now().isoformat(), "records": []})

    async def write(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        record_id = request.path_params["id"]
        object_name = request.path_params.get("object", "deals")
        fault = self.ctx.faults.record_fault(self.name, object_name, record_id)
        if fault == "lock":
            return JSONResponse([{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}], 400)
        if fault == "validation":
            return JSONResponse([{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION"}], 400)
        self.ctx.stats.record_written(self.name, object_name, 1)
        return Response(status_code=204)

    async def oauth(self, request: Request) -> Response:
        return JSONResponse({"access_token": self.ctx.tokens.issue("salesforce")})

    def routes(self) -> list[BaseRoute]:
        if self.name == "salesforce":
            return [
                Route("/services/data/{version}/query", self.read, methods=["GET"]),
                Route(
                    "/services/data/{version}/sobjects/{object}/{id}",
                    self.write,
                    methods=["PATCH"],
                ),
                Route("/services/oauth2/token", self.oauth, methods=["POST"]),
            ]
        return [
            Route("/crm/v3/objects/{object_type}", self.read, methods=["GET"]),
            Mount(
                "/crm/v4",
                routes=[Route("/objects/deals/{id}", self.write, methods=["PATCH"], name="hs4")],
            ),
        ]

    def load_seed(self, plan: SeedPlan) -> None:
        self.seed_companies = [c.name for c, _ in zip(plan.companies(), range(3), strict=False)]

    def is_seeded(self) -> bool:
        return False

    def rate_limited_response(self) -> Response:
        if self.name == "salesforce":
            body = [
                {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
            ]
            return JSONResponse(body, 403)
        return JSONResponse({"status": "error", "errorType": "RATE_LIMIT"}, 429)

    def unavailable_response(self) -> Response:
        return JSONResponse({"message": "down"}, 503)

    def close_won(self, object_id: str) -> None:
        if object_id == "missing":
            raise KeyError(object_id)
        self.closed_won.append(object_id)
        if self.name == "salesforce":
            self.ctx.outbox.emit_salesforce("Opportunity", [object_id])
        else:
            self.ctx.outbox.emit_hubspot(
                [
                    {
                        "objectId": object_id,
                        "subscriptionType": "deal.propertyChange",
                        "propertyName": "dealstage",
                        "propertyValue": "closedwon",
                    }
                ]
            )

    def touch(
        self, object_name: str, *, ids: Iterable[str] | None, count: int | None, at: datetime
    ) -> list[str]:
        chosen = list(ids) if ids is not None else [f"id{n}" for n in range(count or 0)]
        self.touched.append((object_name, chosen, at))
        return chosen

    def declare_field(self, object_name: str, field_name: str, field_type: str) -> None:
        self.fields.append((object_name, field_name, field_type))

    def read_record(self, object_name: str, object_id: str) -> Mapping[str, Any] | None:
        if object_id in self.deleted:
            return None
        return {
            "Id": object_id,
            "Name": "Müller & Söhne <Renewal>",
            "StageName": "Closed Won",
            "Amount": 1200.0,
            "IsWon": True,
            "CloseDate": "2026-01-15",
            "Description": None,
        }

    def reset_rate_limits(self) -> None:
        self.rate_limit_resets += 1


def fake_factories() -> list[Any]:
    return [lambda ctx: FakeEmulator(ctx, "salesforce"), lambda ctx: FakeEmulator(ctx, "hubspot")]


@pytest.fixture
def fake_emulators() -> list[Any]:
    """Factories of the fake emulators, for tests that start their own sandbox."""
    return fake_factories()


@pytest.fixture(scope="module")
def core_sandbox() -> Iterator[Sandbox]:
    """The core with fake emulators; fast webhook backoff so retry tests take milliseconds."""
    config = SandboxConfig(accounts=20, webhook_backoff_base_s=0.02, webhook_backoff_cap_s=0.1)
    with Sandbox(config, emulator_factories=fake_factories()) as sb:
        yield sb


@pytest.fixture
def core(core_sandbox: Sandbox) -> Iterator[Sandbox]:
    """``core_sandbox`` returned to a clean state after each test."""
    yield core_sandbox
    ctx = core_sandbox.ctx
    ctx.faults.set_rules([])
    ctx.faults.clear_record_faults()
    ctx.tokens.restore("salesforce")
    ctx.tokens.restore("hubspot")
    ctx.clock.unfreeze()
    ctx.outbox.configure(
        {
            "hubspot_url": None,
            "salesforce_url": None,
            "hold": False,
            "duplicate": False,
            "reorder": False,
            "batch_size": 50,
        }
    )
    ctx.outbox.clear()
    ctx.outbox.wait_idle(5)
    ctx.stats.reset()


@pytest.fixture
def core_http(core: Sandbox) -> Iterator[requests.Session]:
    s = core.session()
    yield s
    s.close()


# -- webhook receiver -----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records requests; answers with ``script`` statuses in turn, then ``default``."""

    url: str
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default: int = 200
    body: bytes = b"{}"
    bodies: list[bytes] = field(default_factory=list)  # answered in turn, then ``body``
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.01)
        with self.lock:
            raise AssertionError(f"expected {n} requests, got {len(self.received)}")


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                status = receiver.script.pop(0) if receiver.script else receiver.default
                answer = receiver.bodies.pop(0) if receiver.bodies else receiver.body
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/in?source=sandbox"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(5)
