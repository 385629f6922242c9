"""The demo's closed-won step (#20): the sandbox announces its seed's closed-won deals
(``--emit-seed-webhooks``: queued, held, at start) to crmsync's webhook routes served here with
the embedded worker; the demo waits for the inbox to settle and prints the onboarding plans
created, by tier, with their CSMs and the handover completeness.

Kept apart from :mod:`app.cli.demo` (which runs the sync and the health part) so each part has
one owner; ``demo`` calls :func:`closed_won_step` with its running sandbox.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from pydantic import SecretStr
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.cli.common import console
from app.cli.demo_db import DEMO_TRIGGER
from app.db.models import Csm, HandoverNote, OnboardingPlan, WebhookEvent
from app.settings import Settings, WebhookSettings

__all__ = ["DEMO_ASSIGNMENT", "DEMO_CSMS", "SANDBOX_WEBHOOK_HOLD", "closed_won_step"]

#: Webhook options the demo starts its sandbox with: the seed's announcements wait until
#: crmsync listens (without a URL they would be dropped).
SANDBOX_WEBHOOK_HOLD: dict[str, Any] = {"hold": True}

#: The demo's CS manager: serves no tier herself, and takes what no CSM has room for (8.3 step
#: 5, flagged ``csm_capacity_exceeded``) instead of leaving the plan without an owner.
DEMO_CS_MANAGER = "dana.laine@cs.example"

#: The demo's CSM team (domain.md 8): three CSMs for key/high/low, a tech pool user and the CS
#: manager, the fallback owner of every tier with CSMs.
DEMO_CSMS = (
    ("Ada Lindqvist", "ada.lindqvist@cs.example", ("key", "high"), 100, False),
    ("Bo Virtanen", "bo.virtanen@cs.example", ("key", "high", "low"), 100, False),
    ("Cy Korhonen", "cy.korhonen@cs.example", ("high", "low"), 80, False),
    ("Tech pool", "tech-pool@cs.example", ("tech",), 100, True),
    ("Dana Laine (CS manager)", DEMO_CS_MANAGER, (), 100, False),
)

#: ``CRMSYNC_SCORING__ASSIGNMENT__FALLBACK_OWNER__<TIER>`` as the demo sets it.
DEMO_ASSIGNMENT: dict[str, Any] = {
    "fallback_owner": {"key": DEMO_CS_MANAGER, "high": DEMO_CS_MANAGER, "low": DEMO_CS_MANAGER}
}


def _seed_csms(engine: Engine) -> None:
    with Session(engine) as s:
        if s.scalar(select(func.count()).select_from(Csm)):
            return
        for name, email, tiers, capacity, pool in DEMO_CSMS:
            s.add(
                Csm(
                    name=name, email=email, tiers=list(tiers), capacity_units=capacity, is_pool=pool
                )
            )
        s.commit()


def _serve(settings: Settings) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    from app.main import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the demo's API server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def _pending(engine: Engine) -> int:
    with Session(engine) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.status.in_(("received", "processing", "failed")))
            )
            or 0
        )


def closed_won_step(sb: Any, settings: Settings, engine: Engine, *, timeout: float = 300) -> None:
    """Deliver the sandbox's held closed-won announcements to crmsync and print the plans."""
    path_secret = secrets.token_urlsafe(16)
    served = settings.model_copy(
        update={
            "salesforce_webhook_secret": SecretStr(path_secret),
            "webhooks": WebhookSettings(
                embedded_worker=True, worker_threads=2, writeback_triggered_by=DEMO_TRIGGER
            ),
        }
    )
    _seed_csms(engine)
    server, thread, url = _serve(served)
    try:
        sb.control(
            "PUT",
            "/webhooks",
            {
                "hubspot_url": f"{url}/webhooks/hubspot",
                "salesforce_url": f"{url}/webhooks/salesforce/{path_secret}",
                "hold": False,
            },
        )
        sb.control("POST", "/webhooks/flush", {"wait": 60})
        deadline = time.monotonic() + timeout
        time.sleep(0.5)
        while _pending(engine) and time.monotonic() < deadline:
            time.sleep(0.5)
        # the write-back pushes run each second: give the last one its turn
        time.sleep(1.5)
    finally:
        server.should_exit = True
        thread.join(30)
    _print_plans(engine)


def _print_plans(engine: Engine) -> None:
    with Session(engine) as s:
        statuses = dict(
            s.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)).all()
        )
        rows = s.execute(
            select(
                OnboardingPlan.tier_at_close,
                OnboardingPlan.kind,
                Csm.name,
                HandoverNote.status,
                HandoverNote.completeness,
            )
            .outerjoin(Csm, Csm.id == OnboardingPlan.csm_id)
            .outerjoin(HandoverNote, HandoverNote.id == OnboardingPlan.handover_note_id)
        ).all()
    console.print(
        "[bold]8.[/bold] closed-won webhooks: the sandbox announced its seed's won deals; inbox "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    by_tier: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_tier[row[0]].append(row)
    table = Table(title="Onboarding plans created from closed-won webhooks")
    for column in (
        "tier",
        "plans",
        "CSMs (plans)",
        "handover complete / partial / empty",
        "mean %",
    ):
        table.add_column(column)
    for tier in ("key", "high", "low", "tech"):
        items = by_tier.get(tier, [])
        if not items:
            continue
        csms = Counter(r[2] or "none" for r in items)
        status = Counter(r[3] for r in items)
        mean = sum(r[4] or 0 for r in items) / len(items)
        table.add_row(
            tier,
            str(len(items)),
            ", ".join(f"{name} ({n})" for name, n in csms.most_common()),
            f"{status['complete']} / {status['partial']} / {status['empty']}",
            f"{mean:.0f}",
        )
    console.print(table)
