"""The HubSpot emulator: write paths, seed loading and the :class:`CrmEmulator` surface.

Every write (single, batch, upsert, ``close_won``, merge) goes through :meth:`HubSpotEmulator.
write`, which validates values, consults the fault plan, enforces unique properties, stamps
``hs_lastmodifieddate`` from the sandbox clock and emits a ``deal.propertyChange`` webhook when
``dealstage`` becomes ``closedwon``. HTTP lives in :mod:`crmsync_sandbox.hubspot.routes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from crmsync_sandbox.hubspot import schema
from crmsync_sandbox.hubspot.ratelimit import RateLimiter, limit_body
from crmsync_sandbox.hubspot.search import contains_token
from crmsync_sandbox.hubspot.store import (
    PropertyProblem,
    Row,
    Store,
    UniqueConflict,
    property_from_type,
)

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from crmsync_sandbox.context import CrmName, SandboxContext


# -- the seed plan, structurally (crmsync_sandbox/seed.py is owned by the core) ---


class _SeedUser(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def email(self) -> str: ...


class _SeedCompany(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def industry(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def arr(self) -> int: ...
    @property
    def employees(self) -> int: ...
    @property
    def seats(self) -> int: ...
    @property
    def plan(self) -> str: ...
    @property
    def owner_key(self) -> str: ...
    @property
    def strategic(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def contract_start_on(self) -> date | None: ...
    @property
    def contract_end_on(self) -> date | None: ...


class _SeedDeal(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def company_key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def close_on(self) -> date: ...
    @property
    def type(self) -> str: ...
    @property
    def term_months(self) -> int: ...
    @property
    def owner_key(self) -> str: ...
    @property
    def preassigned_csm_email(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


class _SeedNote(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def company_key(self) -> str: ...
    @property
    def deal_key(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def author_key(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class SeedPlanLike(Protocol):
    """What :meth:`HubSpotEmulator.load_seed` reads from ``crmsync_sandbox.seed.SeedPlan``."""

    def users(self) -> Iterable[_SeedUser]: ...
    def companies(self) -> Iterable[_SeedCompany]: ...
    def deals(self) -> Iterable[_SeedDeal]: ...
    def notes(self) -> Iterable[_SeedNote]: ...


STAGE_MAP = {
    "prospecting": "appointmentscheduled",
    "qualification": "qualifiedtobuy",
    "proposal": "presentationscheduled",
    "negotiation": "contractsent",
    "closed_won": "closedwon",
    "closed_lost": "closedlost",
}
DEAL_TYPE_MAP = {
    "new_business": "newbusiness",
    "renewal": "renewal",
    "expansion": "existingbusiness",
}


def seed_number(key: str) -> int:
    """``C0000042`` -> 42 (seed keys are a letter prefix and a number)."""
    try:
        return int(key[1:])
    except ValueError:
        digits = "".join(ch for ch in key if ch.isdigit())
        return int(digits or "0")


def seed_id(object_type: str, key: str) -> int:
    """The deterministic HubSpot id of a seeded record."""
    return schema.ID_BASE[object_type] + seed_number(key)


def owner_id(user_key: str) -> int:
    return schema.OWNER_ID_BASE + seed_number(user_key)


# -- write outcomes -------------------------------------------------------------------------------


@dataclass
class ItemError(Exception):
    """One input of a write that failed; the route turns it into a status or a batch error."""

    status: int
    category: str
    message: str
    errors: list[dict[str, Any]] | None = None

    def body(self, context: dict[str, list[str]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
        }
        if self.errors:
            out["errors"] = self.errors
        if context:
            out["context"] = context
        return out


def validation_error(problems: list[dict[str, Any]]) -> ItemError:
    """HubSpot's VALIDATION_ERROR for rejected property values."""
    details = [
        {
            "message": p["message"],
            "code": p["error"],
            "context": {"propertyName": [p["name"]]},
        }
        for p in problems
    ]
    return ItemError(
        400,
        "VALIDATION_ERROR",
        "Property values were not valid: " + json.dumps(problems, separators=(",", ":")),
        details,
    )


def conflict_error(exc: UniqueConflict) -> ItemError:
    if exc.name == "email":  # contacts: HubSpot's own wording (crm-api.md B.3)
        return ItemError(409, "CONFLICT", f"Contact already exists. Existing ID: {exc.holder}")
    return ItemError(409, "CONFLICT", str(exc))


def fault_error(
    kind: str,
    object_type: str,
    key: str,
    *,
    field: str | None = None,
    message: str | None = None,
) -> ItemError:
    if kind == "lock":
        return ItemError(
            423,
            "LOCKED",
            f"The {schema.SINGULAR[object_type].lower()} {key} is locked by another operation. "
            "Retry after 2 seconds.",
        )
    text = message or "Injected validation fault (sandbox)"
    return validation_error(
        [
            {
                "isValid": False,
                "message": text,
                "error": "INVALID_VALUE",
                "name": field or "hs_object_id",
                "localizedErrorMessage": text,
            }
        ]
    )


class HubSpotEmulator:
    """Implements ``CrmEmulator`` for HubSpot over one :class:`SandboxContext`."""

    name: CrmName = "hubspot"

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        with ctx.lock:
            ctx.db.create_function("hs_contains_token", 2, contains_token, deterministic=True)
            self.store = Store(ctx.db, ctx.lock, cfg.hs_custom_properties)
            if cfg.without_writeback_fields:  # crmsync crm setup creates them (tooling.py)
                for object_type in schema.OBJECT_TYPES:
                    props = self.store.properties(object_type)
                    for name in [n for n, p in props.items() if n.startswith("crmsync_")]:
                        if not props[name].created_ms:  # built in, not created through the API
                            del props[name]
        self.limiter = RateLimiter(
            enabled=cfg.hs_rate_limits,
            burst_max=cfg.hs_burst_max,
            burst_window_ms=cfg.hs_burst_window_ms,
            search_per_second=cfg.hs_search_per_second,
            daily_limit=cfg.hs_daily_limit,
            today=lambda: self.ctx.clock.now().astimezone(UTC).date(),
        )

    # -- clock --------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return schema.ms_from_datetime(self.ctx.clock.now())

    # -- CrmEmulator --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        from crmsync_sandbox.hubspot.oauth import oauth_routes
        from crmsync_sandbox.hubspot.routes import build_routes

        return build_routes(self) + oauth_routes(self.ctx)

    def rate_limited_response(self) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(
            limit_body("TEN_SECONDLY_ROLLING"),
            status_code=429,
            headers=self.limiter.current_headers() if self.limiter.enabled else None,
            media_type="application/json;charset=utf-8",
        )

    def unavailable_response(self) -> Response:
        from starlette.responses import JSONResponse

        from crmsync_sandbox.hubspot.routes import correlation_id

        return JSONResponse(
            {
                "status": "error",
                "message": "Service Unavailable. Please try again later.",
                "correlationId": correlation_id(),
                "category": "SERVICE_UNAVAILABLE",
            },
            status_code=503,
            media_type="application/json;charset=utf-8",
        )

    def reset_rate_limits(self) -> None:
        self.limiter.reset()

    def is_seeded(self) -> bool:
        return self.store.has_rows()

    def load_seed(self, plan: SeedPlanLike) -> None:
        self.store.add_owners(
            (owner_id(u.key), u.email, u.first_name, u.last_name, 0) for u in plan.users()
        )
        self.store.bulk_insert("companies", self._seed_companies(plan))
        links: list[tuple[str, int, str, int, int]] = []
        self.store.bulk_insert("deals", self._seed_deals(plan, links))
        self.store.associate(links)
        links = []
        self.store.bulk_insert("notes", self._seed_notes(plan, links))
        self.store.associate(links)
        with self.ctx.lock:
            self.ctx.db.execute("ANALYZE")
            self.ctx.db.commit()
        if self.ctx.config.emit_seed_webhooks:
            self._emit_seed_closed_won()

    def _emit_seed_closed_won(self) -> None:
        """``deal.propertyChange`` to ``closedwon`` for the seed's won deals, as if just closed."""
        with self.ctx.lock:
            rows = self.ctx.db.execute(
                "SELECT id FROM hs_deals WHERE archived = 0 "
                "AND json_extract(props, '$.dealstage') = 'closedwon' ORDER BY id"
            ).fetchall()
        occurred = int(self.ctx.clock.now().timestamp() * 1000)
        events = [
            {
                "subscriptionType": "deal.propertyChange",
                "objectId": int(row[0]),
                "propertyName": "dealstage",
                "propertyValue": "closedwon",
                "occurredAt": occurred,
                "changeSource": "CRM_UI",
            }
            for row in rows
        ]
        if events:
            self.ctx.outbox.emit_hubspot(events)

    def _seed_companies(self, plan: SeedPlanLike) -> Iterator[tuple[int, int, int, str]]:
        for c in plan.companies():
            created = schema.ms_from_datetime(c.created_at)
            props: dict[str, str] = {
                "name": c.name,
                "domain": c.domain,
                "industry": c.industry,
                "country": c.country,
                "annualrevenue": str(c.arr),
                "numberofemployees": str(c.employees),
                "hubspot_owner_id": str(owner_id(c.owner_key)),
                "arr": str(c.arr),
                "licensed_seats": str(c.seats),
                "plan": c.plan,
                "strategic_account": "true" if c.strategic else "false",
            }
            if c.contract_start_on is not None:
                props["contract_start_date"] = c.contract_start_on.isoformat()
            if c.contract_end_on is not None:
                props["contract_end_date"] = c.contract_end_on.isoformat()
            yield (seed_id("companies", c.key), created, created, _dumps(props))

    def _seed_deals(
        self, plan: SeedPlanLike, links: list[tuple[str, int, str, int, int]]
    ) -> Iterator[tuple[int, int, int, str]]:
        for d in plan.deals():
            created = schema.ms_from_datetime(d.created_at)
            stage = STAGE_MAP.get(d.stage, d.stage)
            props: dict[str, str] = {
                "dealname": d.name,
                "amount": str(d.amount),
                "closedate": d.close_on.isoformat() + "T00:00:00.000Z",
                "pipeline": "default",
                "dealstage": stage,
                "dealtype": DEAL_TYPE_MAP.get(d.type, d.type),
                "hubspot_owner_id": str(owner_id(d.owner_key)),
                "contract_term_months": str(d.term_months),
                **schema.derive_deal_flags(stage),
            }
            if d.preassigned_csm_email:
                props["preassigned_csm_email"] = d.preassigned_csm_email
            deal_id = seed_id("deals", d.key)
            company_id = seed_id("companies", d.company_key)
            links.append(("deals", deal_id, "companies", company_id, 341))
            links.append(("deals", deal_id, "companies", company_id, 5))
            yield (deal_id, created, created, _dumps(props))

    def _seed_notes(
        self, plan: SeedPlanLike, links: list[tuple[str, int, str, int, int]]
    ) -> Iterator[tuple[int, int, int, str]]:
        for n in plan.notes():
            created = schema.ms_from_datetime(n.created_at)
            deal_id = seed_id("deals", n.deal_key)
            note_id = seed_id("notes", n.key)
            props = {
                "hs_note_body": n.body.replace("{opportunity_id}", str(deal_id)),
                "hs_timestamp": schema.iso_from_ms(created),
                "hubspot_owner_id": str(owner_id(n.author_key)),
            }
            links.append(("notes", note_id, "companies", seed_id("companies", n.company_key), 190))
            links.append(("notes", note_id, "deals", deal_id, 214))
            yield (note_id, created, created, _dumps(props))

    def close_won(self, object_id: str) -> None:
        with self.ctx.lock:
            row = self.store.find("deals", object_id)
            if row is None:
                raise KeyError(f"no live deal {object_id}")
            events: list[dict[str, Any]] = []
            self.write("deals", row, {"dealstage": schema.CLOSED_WON}, events, source="CRM_UI")
            self.store.commit()
        self.emit(events)

    def touch(
        self, object_name: str, *, ids: Iterable[str] | None, count: int | None, at: datetime
    ) -> list[str]:
        object_type = self.resolve_type(object_name)
        at_ms = schema.ms_from_datetime(at)
        with self.ctx.lock:
            if ids is not None:
                chosen = [int(i) for i in ids]
            else:
                rows = self.ctx.db.execute(
                    f"SELECT id FROM hs_{object_type} WHERE archived = 0 ORDER BY id LIMIT ?",
                    (count if count is not None else -1,),
                ).fetchall()
                chosen = [int(r[0]) for r in rows]
            self.store.stamp(object_type, chosen, at_ms)
        return [str(i) for i in chosen]

    def declare_field(self, object_name: str, field_name: str, field_type: str) -> None:
        object_type = self.resolve_type(object_name)
        if field_name in self.store.properties(object_type):
            return
        prop = property_from_type(field_name, field_type)
        self.store.add_property(object_type, replace(prop, created_ms=self.now_ms()))

    def read_record(self, object_name: str, object_id: str) -> Mapping[str, Any] | None:
        object_type = self.resolve_type(object_name)
        row = self.store.find(object_type, object_id, archived=None)
        if row is None:
            return None
        out: dict[str, Any] = dict(row.all_values())
        out["id"] = str(row.id)
        out["archived"] = row.archived
        return out

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def resolve_type(name: str) -> str:
        object_type = schema.TYPE_ALIASES.get(name.lower())
        if object_type is None:
            raise KeyError(f"unknown HubSpot object type {name!r}")
        return object_type

    def emit(self, events: list[dict[str, Any]]) -> None:
        if events:
            self.ctx.outbox.emit_hubspot(events)

    def write(
        self,
        object_type: str,
        row: Row | None,
        values: Mapping[str, str | None],
        events: list[dict[str, Any]],
        *,
        source: str = "API",
        now_ms: int | None = None,
        fault_key: str | None = None,
    ) -> Row:
        """Create (``row`` None) or update one record with validated ``values``.

        Raises :class:`ItemError` for an injected fault or a unique-value conflict. The caller
        holds ``ctx.lock`` and commits.
        """
        stamp = self.now_ms() if now_ms is None else now_ms
        key = str(row.id) if row is not None else (fault_key or "")
        fault = self.ctx.faults.take_record_fault("hubspot", object_type, key)
        if fault is not None:
            raise fault_error(
                fault.kind, object_type, key, field=fault.field, message=fault.message
            )
        try:
            self.store.check_unique(object_type, values, None if row is None else row.id)
        except UniqueConflict as exc:
            raise conflict_error(exc) from exc
        before = None if row is None else row.props.get("dealstage")
        if row is None:
            written = self.store.insert(object_type, values, stamp)
        else:
            written = self.store.apply(row, values, stamp)
        self.ctx.stats.record_written("hubspot", object_type, 1)
        if (
            object_type == "deals"
            and written.props.get("dealstage") == schema.CLOSED_WON
            and before != schema.CLOSED_WON
        ):
            events.append(
                {
                    "subscriptionType": "deal.propertyChange",
                    "objectId": written.id,
                    "propertyName": "dealstage",
                    "propertyValue": schema.CLOSED_WON,
                    "occurredAt": stamp,
                    "changeSource": source,
                }
            )
        return written

    def validate(
        self, object_type: str, raw: Any, *, for_create: bool = False
    ) -> dict[str, str | None]:
        """Request property values -> stored strings, or :class:`ItemError` (400)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ItemError(400, "VALIDATION_ERROR", "properties must be an object")
        try:
            return self.store.validate(object_type, raw, for_create=for_create)
        except PropertyProblem as exc:
            raise validation_error(exc.problems) from exc

    def merge(self, object_type: str, winner: Row, loser: Row) -> Row:
        """Fold ``loser`` into ``winner``; the loser id vanishes (not archived)."""
        values: dict[str, str | None] = {
            k: v for k, v in loser.props.items() if k not in winner.props
        }
        merged = [m for m in winner.props.get("hs_merged_object_ids", "").split(";") if m]
        merged += [m for m in loser.props.get("hs_merged_object_ids", "").split(";") if m]
        merged.append(str(loser.id))
        values["hs_merged_object_ids"] = ";".join(merged)
        for name in [k for k in values if self.store.properties(object_type).get(k) is not None]:
            prop = self.store.properties(object_type)[name]
            if prop.has_unique_value:
                values.pop(name)
        with self.ctx.lock:
            self.store.delete(object_type, loser.id)
            self.store.move_associations(object_type, loser.id, winner.id)
            written = self.store.apply(winner, values, self.now_ms())
            self.store.commit()
        self.ctx.stats.record_written("hubspot", object_type, 2)
        return written


def _dumps(props: Mapping[str, str]) -> str:
    return json.dumps(props, separators=(",", ":"))
