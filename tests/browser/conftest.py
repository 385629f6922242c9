"""The browser harness: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright against
a live ``crmsync serve --with-worker`` and the CRM sandbox, on a database of its own.

Nothing is downloaded: Playwright launches the system browser (``executable_path``), never
``playwright install``'s. Without ``/usr/bin/chromium`` (or ``CRMSYNC_TEST_CHROMIUM``) every test
here is skipped, saying so; ``.ci/run`` installs it first.

Fixtures for tests:

* ``live``: the running stack (module scope): ``live.url``, ``live.database_url``,
  ``live.keys[role]`` (a stored key per role), ``live.factory`` (a session factory on its
  database), ``live.sandbox``;
* ``page_as(role)``: a new browser context signed in through the sign-in form with that role's
  key (``"viewer"``, ``"operator"``, ``"admin"``); returns its page;
* ``shot(page, name)``: a full-page screenshot at 1280 px and at 390 px wide, into
  ``CRMSYNC_SCREENSHOTS_DIR`` (default ``var/screenshots`` in the checkout), which
  ``.ci/run`` prints; at 390 px it also asserts that the page does not scroll sideways
  (``document.documentElement.scrollWidth <= 390``), nor any box in it (a table in an
  ``overflow-x: auto`` wrapper): readable on a phone (issue #21 item 4).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker

from app.core.access import Role
from app.db.api_keys import create_key
from app.db.engine import make_engine, make_session_factory
from crmsync_sandbox import Sandbox, SandboxConfig

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CRMSYNC_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("CRMSYNC_SCREENSHOTS_DIR", str(ROOT / "var" / "screenshots")))
ACCOUNTS = 60
WIDTHS = {"wide": 1280, "narrow": 390}
#: The page's width, the elements that scroll sideways inside it (a table in an
#: ``overflow-x: auto`` box) and, for the message, the elements wider than the window.
OVERFLOW_JS = """() => {
  const limit = document.documentElement.clientWidth;
  const name = (e) => e.tagName.toLowerCase() + (e.className ? "." + e.className : "")
    + (e.dataset.testid ? "[" + e.dataset.testid + "]" : "");
  const all = [...document.querySelectorAll("body *")];
  const scrollers = all
    .filter((e) => ["auto", "scroll"].includes(getComputedStyle(e).overflowX))
    .filter((e) => e.scrollWidth > e.clientWidth + 1)
    .map((e) => name(e) + " " + e.scrollWidth + ">" + e.clientWidth);
  const wide = all
    .filter((e) => e.getBoundingClientRect().right > limit + 0.5)
    .slice(0, 8)
    .map((e) => name(e) + " " + Math.round(e.getBoundingClientRect().right));
  return {scrollWidth: document.documentElement.scrollWidth, scrollers, wide};
}"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does) or set "
            "CRMSYNC_TEST_CHROMIUM"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's own sandbox refuses to start.
        launched = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    url: str
    database_url: str
    sandbox: Sandbox
    factory: sessionmaker[Session]
    keys: dict[str, str] = field(default_factory=dict)
    log: Path | None = None

    def output(self) -> str:
        return self.log.read_text()[-4000:] if self.log is not None else ""


@pytest.fixture(scope="module")
def live(database_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """``crmsync serve --with-worker`` on a fresh migrated database, pointed at the sandbox;
    no schedule (runs start only from the console), SIGTERM at the end."""
    database_url = database_factory.migrated()
    workdir = tmp_path_factory.mktemp("live")
    with Sandbox(SandboxConfig(accounts=ACCOUNTS, hs_rate_limits=False)) as sb:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        env.update(sb.info.env())
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "CRMSYNC_DATABASE_URL": database_url,
                "CRMSYNC_DATA_DIR": str(workdir / "data"),
                "CRMSYNC_JOBS__INCREMENTAL_MINUTES": "0",
                "CRMSYNC_JOBS__NIGHTLY_HOUR": "-1",
                "CRMSYNC_CONSOLE__SECURE_COOKIE": "false",
            }
        )
        port = _free_port()
        log = workdir / "serve.log"
        with log.open("w") as handle:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.cli.main",
                    "serve",
                    "--with-worker",
                    "--port",
                    str(port),
                ],
                env=env,
                cwd=workdir,
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
            )
        engine = make_engine(database_url)
        live = Live(
            url=f"http://127.0.0.1:{port}",
            database_url=database_url,
            sandbox=sb,
            factory=make_session_factory(engine),
            log=log,
        )
        try:
            _wait_ready(live, proc)
            with live.factory() as s:
                for role in Role:
                    _row, key = create_key(s, name=f"browser-{role.value}", role=role)
                    live.keys[role.value] = key
                s.commit()
            yield live
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            engine.dispose()


def _wait_ready(live: Live, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"crmsync serve exited {proc.returncode}\n{live.output()}")
        try:
            if requests.get(f"{live.url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"crmsync serve did not get ready\n{live.output()}")


@pytest.fixture
def page_as(browser: Browser, live: Live) -> Iterator[Callable[[str], Page]]:
    contexts: list[Any] = []

    def open_as(role: str) -> Page:
        context = browser.new_context(
            base_url=live.url, viewport={"width": WIDTHS["wide"], "height": 900}
        )
        contexts.append(context)
        page = context.new_page()
        page.goto("/console/status")
        assert "/console/sign-in" in page.url  # not signed in yet: sent to the sign-in page
        page.fill("input[name=api_key]", live.keys[role])
        page.click("button[type=submit]")
        page.wait_for_url("**/console/status")
        return page

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def shot(screenshots_dir: Path) -> Callable[[Page, str], None]:
    def take(page: Page, name: str) -> None:
        size = page.viewport_size or {"width": WIDTHS["wide"], "height": 900}
        overflow: dict[str, Any] = {}
        for label, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": size["height"]})
            page.screenshot(path=str(screenshots_dir / f"{name}-{label}.png"), full_page=True)
            if label == "narrow":
                overflow = page.evaluate(OVERFLOW_JS)
        page.set_viewport_size(size)
        assert overflow["scrollWidth"] <= WIDTHS["narrow"], (
            f"{name} scrolls sideways at {WIDTHS['narrow']} px: {overflow}"
        )
        assert overflow["scrollers"] == [], (
            f"{name} has boxes that scroll sideways at {WIDTHS['narrow']} px: {overflow}"
        )

    return take
