"""Assembly of a running sandbox: state, emulators, seed, HTTPS server in a background thread.

One port serves both CRMs: Salesforce under ``/services/``, HubSpot under ``/crm/``, the control
API under ``/__sandbox/``. The emulators are plain Starlette routes behind
:class:`~crmsync_sandbox.middleware.SandboxMiddleware` (faults and call accounting), served by
uvicorn over TLS with a trustme CA.

Usage in tests::

    with Sandbox(SandboxConfig(accounts=20)) as sb:
        sb.info.salesforce.instance_url, sb.info.hubspot.base_url, sb.info.ca_file
        sb.control("POST", "/tokens/expire", json={"crm": "hubspot"})

State is one SQLite connection (``:memory:``, or ``<state_dir>/sandbox.db`` so a demo survives a
restart) shared by both emulators under ``ctx.lock``. With a state dir already holding data the
seed is not applied again.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from crmsync_sandbox.clock import Clock
from crmsync_sandbox.context import CrmEmulator, SandboxConfig, SandboxContext
from crmsync_sandbox.control import control_routes
from crmsync_sandbox.fallback import exception_handlers
from crmsync_sandbox.faults import Faults, parse_fault_spec
from crmsync_sandbox.info import HubSpotInfo, SalesforceInfo, SandboxInfo, my_domain_url
from crmsync_sandbox.jwtkeys import make_jwt_keys
from crmsync_sandbox.middleware import SandboxMiddleware
from crmsync_sandbox.seed import SeedPlan
from crmsync_sandbox.stats import Stats
from crmsync_sandbox.tls import make_tls_files
from crmsync_sandbox.tokens import Tokens
from crmsync_sandbox.webhooks import WebhookOutbox

__all__ = ["EmulatorFactory", "Sandbox", "default_emulator_factories"]

log = logging.getLogger(__name__)

EmulatorFactory = Callable[[SandboxContext], CrmEmulator]
EMULATOR_MODULES = ("crmsync_sandbox.salesforce", "crmsync_sandbox.hubspot")


def default_emulator_factories() -> list[EmulatorFactory]:
    """``build_emulator`` of each emulator package that is importable; the others are skipped
    with a log line (so the core runs while an emulator is still being written)."""
    factories: list[EmulatorFactory] = []
    for module_name in EMULATOR_MODULES:
        try:
            module = importlib.import_module(module_name)
            factory: EmulatorFactory = module.build_emulator
        except (ImportError, AttributeError) as exc:
            log.warning("sandbox: %s not available (%s); serving without it", module_name, exc)
            continue
        factories.append(factory)
    return factories


class PortUnavailableError(OSError):
    """The sandbox cannot listen on ``host:port``: in use (often an earlier sandbox), not
    permitted, or no such address. The CLI turns it into a two-line message."""

    def __init__(self, host: str, port: int, reason: str, *, in_use: bool = False) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason
        self.in_use = in_use


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        in_use = exc.errno == errno.EADDRINUSE
        raise PortUnavailableError(host, port, exc.strerror or str(exc), in_use=in_use) from exc
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, minus the graceful wait on idle keep-alive TLS connections.

    A TLS close waits for the peer's close_notify, which an idle pooled client never sends, so a
    plain shutdown hangs for ``timeout_graceful_shutdown`` and leaks the transport. A sandbox has
    nothing to drain: abort every connection, then shut down as usual."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await super().shutdown(sockets)


class Sandbox:
    """A running sandbox; a context manager (``start()`` / ``stop()`` also work)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        info_file: Path | str | None = None,
        env_file: Path | str | None = None,
        emulator_factories: Sequence[EmulatorFactory] | None = None,
        webhooks: dict[str, Any] | None = None,
        seed_now: datetime | None = None,
    ) -> None:
        self.config = config or SandboxConfig()
        self.info_file = Path(info_file) if info_file else None
        self.env_file = Path(env_file) if env_file else None
        self._factories = emulator_factories
        self._webhook_overrides = dict(webhooks or {})
        self._seed_now = seed_now
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._session: requests.Session | None = None
        self._ctx: SandboxContext | None = None
        self._info: SandboxInfo | None = None
        self._jwt_private_key: Path | None = None  # generated for the JWT flow, if we made it

    # -- public -------------------------------------------------------------------------------

    @property
    def ctx(self) -> SandboxContext:
        if self._ctx is None:
            raise RuntimeError("sandbox not started")
        return self._ctx

    @property
    def info(self) -> SandboxInfo:
        if self._info is None:
            raise RuntimeError("sandbox not started")
        return self._info

    @property
    def base_url(self) -> str:
        return self.ctx.base_url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> SandboxInfo:
        """Build state, seed, serve; returns once the server accepts connections."""
        if self._ctx is not None:
            return self.info
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop serving and release every resource (threads, sockets, files)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                log.warning("sandbox: server thread did not stop within 15 s")
            self._thread = None
        self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._ctx is not None:
            self._ctx.outbox.close()
            with self._ctx.lock:
                self._ctx.db.close()
            self._ctx = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def control(self, method: str, path: str, json: Any = None) -> Any:
        """Call the control API (``path`` relative to ``/__sandbox``); returns the JSON answer,
        raises ``requests.HTTPError`` on 4xx/5xx."""
        response = self.control_response(method, path, json=json)
        response.raise_for_status()
        return response.json()

    def control_response(self, method: str, path: str, json: Any = None) -> requests.Response:
        if self._session is None:
            self._session = self.session()
        url = self.info.control_url + "/" + path.lstrip("/")
        return self._session.request(method, url, json=json, timeout=30)

    def session(self) -> requests.Session:
        """A ``requests.Session`` that trusts this sandbox's CA (and ignores REQUESTS_CA_BUNDLE,
        which would otherwise override ``verify``; crm-api.md §0). Caller closes it."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.info.ca_file
        return s

    def wait(self) -> None:
        """Block until the server stops (the CLI's foreground mode)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    # -- start-up -----------------------------------------------------------------------------

    def _start(self) -> SandboxInfo:
        config = self.config
        if config.state_dir is not None:
            state_dir = Path(config.state_dir)
            state_dir.mkdir(parents=True, exist_ok=True)
            db_path = str(state_dir / "sandbox.db")
        else:
            self._tempdir = tempfile.TemporaryDirectory(prefix="crmsync-sandbox-")
            state_dir = Path(self._tempdir.name)
            db_path = ":memory:"
        tls = make_tls_files(state_dir / "tls")
        if config.sf_jwt_certificate is None:
            # The connected app's certificate, and the key a client signs with: our own dir.
            keys = make_jwt_keys(state_dir / "oauth")
            self._jwt_private_key = keys.private_key_file
            config = self.config = replace(config, sf_jwt_certificate=keys.certificate_file)

        db = sqlite3.connect(db_path, check_same_thread=False)
        if db_path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.commit()

        clock = Clock()
        rules = [parse_fault_spec(spec) for spec in config.faults]
        faults = Faults(config.seed if config.fault_seed is None else config.fault_seed, rules)
        outbox = WebhookOutbox(config, clock)
        outbox.settings.update(
            {
                "backoff_base_s": config.webhook_backoff_base_s,
                "backoff_cap_s": config.webhook_backoff_cap_s,
                "timeout_s": config.webhook_timeout_s,
                **self._webhook_overrides,
            }
        )
        ctx = SandboxContext(
            config=config,
            db=db,
            lock=threading.RLock(),
            clock=clock,
            stats=Stats(),
            faults=faults,
            tokens=Tokens(config, clock.now),
            outbox=outbox,
        )
        self._ctx = ctx

        self._sock = _bind(config.host, config.port)
        port = self._sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        ctx.base_url = f"https://{host}:{port}"
        outbox.instance_url = ctx.base_url
        outbox.read_record = self._read_record

        factories = self._factories if self._factories is not None else default_emulator_factories()
        for factory in factories:
            emulator = factory(ctx)
            ctx.emulators[emulator.name] = emulator
        self._seed(ctx)
        ctx.stats.reset()  # count what clients do, not what seeding wrote

        self._info = self._make_info(str(tls.ca_file))
        app = self._build_app(ctx)
        uv_config = uvicorn.Config(
            app,
            ssl_certfile=str(tls.cert_file),
            ssl_keyfile=str(tls.key_file),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            timeout_keep_alive=30,
        )
        self._server = _Server(uv_config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"sandbox-server-{port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("sandbox server failed to start (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start within 30 s")
            time.sleep(0.01)
        outbox.start()

        if self.info_file is not None:
            self._info.write_info_file(self.info_file)
        if self.env_file is not None:
            self._info.write_env_file(self.env_file)
        log.info("sandbox: serving %s", ctx.base_url)
        return self._info

    def _seed(self, ctx: SandboxContext) -> None:
        config = self.config
        now = self._seed_now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        plan = SeedPlan(config.seed, config.accounts, now)
        for name, emulator in ctx.emulators.items():
            if emulator.is_seeded():
                with ctx.lock:
                    row = ctx.db.execute(
                        "SELECT value FROM meta WHERE key = ?", (f"seed:{name}",)
                    ).fetchone()
                if row is not None and row[0] != f"{config.seed}/{config.accounts}":
                    log.warning("sandbox: %s state has seed/accounts %s; kept", name, row[0])
                continue
            started = time.monotonic()
            emulator.load_seed(plan)
            with ctx.lock:
                ctx.db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (f"seed:{name}", f"{config.seed}/{config.accounts}"),
                )
                ctx.db.commit()
            log.info("sandbox: seeded %s in %.1f s", name, time.monotonic() - started)

    def _build_app(self, ctx: SandboxContext) -> SandboxMiddleware:
        routes: list[BaseRoute] = list(control_routes(ctx, lambda: self.info.to_dict()))
        for emulator in ctx.emulators.values():
            routes.extend(emulator.routes())
        starlette_app = Starlette(routes=routes, exception_handlers=dict(exception_handlers()))
        return SandboxMiddleware(starlette_app, ctx, routes)

    def _make_info(self, ca_file: str) -> SandboxInfo:
        config, base = self.config, self.ctx.base_url
        key = self._jwt_private_key
        return SandboxInfo(
            salesforce=SalesforceInfo(
                instance_url=my_domain_url(base),
                api_version=config.sf_api_version,
                access_token=config.sf_access_token,
                client_id=config.sf_client_id,
                client_secret=config.sf_client_secret,
                organization_id=config.sf_organization_id,
                login_url=base,
                username=config.sf_username,
                refresh_token=config.sf_refresh_token,
                jwt_private_key_file=str(key) if key is not None else None,
                jwt_certificate_file=str(config.sf_jwt_certificate or ""),
            ),
            hubspot=HubSpotInfo(
                base_url=base,
                access_token=config.hs_access_token,
                app_secret=config.hs_app_secret,
                portal_id=config.hs_portal_id,
                client_id=config.hs_client_id,
                client_secret=config.hs_client_secret,
                refresh_token=config.hs_refresh_token,
            ),
            ca_file=ca_file,
            control_url=f"{base}/__sandbox",
        )

    def _read_record(self, object_name: str, record_id: str) -> Any:
        ctx = self._ctx
        emulator = ctx.emulators.get("salesforce") if ctx is not None else None
        if emulator is None:
            return None
        with contextlib.suppress(LookupError):
            return emulator.read_record(object_name, record_id)
        return None
