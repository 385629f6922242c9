"""Fault injection: what goes wrong, where, and how often.

Two kinds of faults:

* **Route faults** (applied by :class:`crmsync_sandbox.middleware.SandboxMiddleware` before the
  emulator sees the request): per matching route, a probability of answering with the CRM's own
  rate-limit response (``rate_limit``), its 503 (``unavailable``), of dropping the TCP connection
  without an answer (``reset``), and a delay ``slow_ms`` applied with probability ``slow``.
  A rule's ``match`` is a glob tried against ``"METHOD /actual/path"``,
  ``"METHOD /route/{template}"``, the bare path, the template and the route name, so
  ``"GET /crm/*"``, ``"*/query"`` and ``"POST /services/data/{version}/composite/sobjects"``
  all work.
  The first matching rule wins.
  Draws come from one seeded RNG, so a run is reproducible for a given request order.
* **Record faults** (asked for by the emulators' write paths through :meth:`Faults.record_fault`):
  ``lock`` (Salesforce ``UNABLE_TO_LOCK_ROW``, HubSpot 423) or ``validation`` for chosen record ids,
  a number of times (``count``) or until cleared (``count=None``). An id may also be an external
  id value (Salesforce ``Crmsync_Id__c``, HubSpot ``crmsync_id``), so a record an upsert is
  about to create can be made to fail. A ``validation`` fault is a validation rule: Salesforce
  answers ``FIELD_CUSTOM_VALIDATION_EXCEPTION``, HubSpot ``VALIDATION_ERROR``; ``field`` names the
  field the rule flags and ``message`` is its error message (both optional).
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = [
    "FaultDecision",
    "Faults",
    "RecordFault",
    "RecordFaultKind",
    "RouteFault",
    "parse_fault_spec",
]

RecordFaultKind = Literal["lock", "validation"]
_RATE_FIELDS = ("rate_limit", "unavailable", "reset", "slow")


@dataclass
class RouteFault:
    """One rule: rates are probabilities in [0, 1]; ``slow_ms`` is the delay when slow fires."""

    match: str
    rate_limit: float = 0.0
    unavailable: float = 0.0
    reset: float = 0.0
    slow_ms: int = 0
    slow: float = 1.0  # probability of the delay, when slow_ms > 0

    def __post_init__(self) -> None:
        if not isinstance(self.match, str) or not self.match:
            raise ValueError("match: a non-empty glob such as 'GET /crm/*' is required")
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{name}: must be a number between 0 and 1")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: must be between 0 and 1, got {value}")
            setattr(self, name, float(value))
        if not isinstance(self.slow_ms, int) or isinstance(self.slow_ms, bool) or self.slow_ms < 0:
            raise ValueError("slow_ms: must be a non-negative integer")

    def matches(self, candidates: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(c, self.match) for c in candidates)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteFault:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown fault field (known: {', '.join(sorted(known))})"
            )
        if "match" not in data:
            raise ValueError("match: required")
        return cls(**dict(data))


@dataclass(frozen=True)
class FaultDecision:
    """What the middleware must do with one request."""

    action: Literal["pass", "rate_limit", "unavailable", "reset"] = "pass"
    delay_ms: int = 0


def parse_fault_spec(spec: str) -> RouteFault:
    """``'GET /crm/*:rate_limit=0.1,slow_ms=200'`` -> :class:`RouteFault` (CLI ``--fault``)."""
    match, sep, options = spec.rpartition(":")
    if not sep or not match:
        raise ValueError(f"fault {spec!r}: expected 'GLOB:name=value[,name=value]'")
    data: dict[str, Any] = {"match": match.strip()}
    for part in filter(None, (p.strip() for p in options.split(","))):
        name, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"fault {spec!r}: {part!r} is not name=value")
        name = name.strip()
        data[name] = int(value) if name == "slow_ms" else float(value)
    return RouteFault.from_dict(data)


@dataclass
class RecordFault:
    kind: RecordFaultKind
    remaining: int | None  # None = until cleared
    field: str | None = None  # validation: the field the rule flags
    message: str | None = None  # validation: the rule's error message


class Faults:
    """Route rules + record faults, thread-safe, with a seeded RNG."""

    def __init__(self, seed: int = 0, rules: Iterable[RouteFault] = ()) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._rules: list[RouteFault] = list(rules)
        self._records: dict[tuple[str, str, str], RecordFault] = {}

    # -- route faults -------------------------------------------------------------------------

    @property
    def rules(self) -> list[RouteFault]:
        with self._lock:
            return list(self._rules)

    def set_rules(self, rules: Iterable[RouteFault], seed: int | None = None) -> None:
        """Replace every route rule; a new ``seed`` restarts the RNG."""
        with self._lock:
            self._rules = list(rules)
            if seed is not None:
                self._seed = seed
                self._rng = random.Random(seed)

    def add_rule(self, rule: RouteFault) -> None:
        with self._lock:
            self._rules.append(rule)

    def decide(self, candidates: Iterable[str]) -> FaultDecision:
        """Draw the fault for one request, given the names it can be matched by."""
        names = list(candidates)
        with self._lock:
            rule = next((r for r in self._rules if r.matches(names)), None)
            if rule is None:
                return FaultDecision()
            delay = 0
            if rule.slow_ms and self._rng.random() < rule.slow:
                delay = rule.slow_ms
            # One draw per kind, in a fixed order, so a given seed gives a stable sequence.
            if self._rng.random() < rule.reset:
                return FaultDecision("reset", delay)
            if self._rng.random() < rule.unavailable:
                return FaultDecision("unavailable", delay)
            if self._rng.random() < rule.rate_limit:
                return FaultDecision("rate_limit", delay)
            return FaultDecision("pass", delay)

    # -- record faults ------------------------------------------------------------------------

    def set_record_fault(
        self,
        crm: str,
        object_name: str,
        record_ids: Iterable[str],
        kind: RecordFaultKind,
        count: int | None = None,
        *,
        field: str | None = None,
        message: str | None = None,
    ) -> None:
        """Make writes to these records fail ``count`` times (``None``: until cleared).

        ``object_name`` ``"*"`` matches any object."""
        if kind not in ("lock", "validation"):
            raise ValueError("kind: must be 'lock' or 'validation'")
        if count is not None and count < 1:
            raise ValueError("count: must be a positive integer or null")
        with self._lock:
            for rid in record_ids:
                self._records[(crm, object_name, str(rid))] = RecordFault(
                    kind, count, field, message
                )

    def clear_record_faults(self, crm: str | None = None) -> None:
        with self._lock:
            if crm is None:
                self._records.clear()
            else:
                for key in [k for k in self._records if k[0] == crm]:
                    del self._records[key]

    def record_fault(self, crm: str, object_name: str, record_id: str) -> RecordFaultKind | None:
        """Called by an emulator before writing a record: the fault to answer with, if any.

        Each call that returns a fault uses up one of its ``count``."""
        fault = self.take_record_fault(crm, object_name, record_id)
        return None if fault is None else fault.kind

    def take_record_fault(self, crm: str, object_name: str, record_id: str) -> RecordFault | None:
        """:meth:`record_fault` with the fault's details (the validation field and message)."""
        with self._lock:
            for key in ((crm, object_name, record_id), (crm, "*", record_id)):
                fault = self._records.get(key)
                if fault is None:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._records[key]
                return RecordFault(fault.kind, fault.remaining, fault.field, fault.message)
            return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self._seed,
                "routes": [asdict(r) for r in self._rules],
                "records": [
                    {
                        "crm": c,
                        "object": o,
                        "id": i,
                        "kind": f.kind,
                        "remaining": f.remaining,
                        **({"field": f.field} if f.field else {}),
                        **({"message": f.message} if f.message else {}),
                    }
                    for (c, o, i), f in self._records.items()
                ],
            }
