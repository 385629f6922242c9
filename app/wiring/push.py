"""Run pushes from settings: the one function the CLI, the API preview and the notes call.

:func:`run_push` builds the CRM's mapping set, a :class:`~app.sync.push.PushEngine` over the SQL
store and (only when something is to be written) the CRM's writer
(:func:`app.wiring.writers.build_writer`), then pushes the objects parents first.

A real push plans once, inside its runs (the preview pass is the dry run's alone). Just before
its first write it checks the CRM's target fields (:class:`CachedTargets` over
:func:`provision_check`: one describe / properties read per object pushed, made by the push's
own writer, so counted in the run's ``api_calls`` and in ``planned_calls``) and refuses with one
message listing what is missing (:class:`MissingTargetsError`, exit 2; the run row is closed
``failed`` with it), instead of failing record by record. A passed check is cached per object in
``sync_cursors`` (stream ``targets``), keyed by a hash of the object's target fields, for
``CRMSYNC_PUSH__TARGET_CHECK_TTL_SECONDS``. A push with nothing to do makes no API call at all,
not even a describe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from app.core.types import CrmName
from app.crm.provision import FieldReader, FieldSpec, compare, refusal, target_specs
from app.crm.writes import Association, CrmWriter
from app.db.engine import make_engine, make_session_factory
from app.db.push_store import SqlPushStore
from app.errors import ConfigError
from app.logging import get_logger
from app.mappers.config import load_mapping_set
from app.mappers.notes import create_extras as note_extras
from app.mappers.push_plan import CreateExtras
from app.mappers.spec import MappingSet, ObjectMapping
from app.settings import Settings
from app.sync.pull import PassInterrupted
from app.sync.push import ObjectPreview, PushEngine, PushProgress
from app.sync.push_ports import DefaultPushTuning, MissingTargetsError
from app.sync.run_scope import RunResult
from app.wiring.gc_passes import fewer_gc_passes
from app.wiring.notes import guard_note_creates
from app.wiring.writers import build_writer, write_tuning

log = get_logger("crmsync.push")


class TargetCheck(Protocol):
    """Which of ``specs`` the CRM lacks, read through ``writer`` (the push's own counted client):
    one refusal message listing them, or None when the push may write."""

    def __call__(self, writer: CrmWriter, specs: Sequence[FieldSpec]) -> str | None: ...


def provision_check(writer: CrmWriter, specs: Sequence[FieldSpec]) -> str | None:
    """:class:`TargetCheck` through :func:`app.crm.provision.compare`: one describe (Salesforce)
    or properties read (HubSpot) per object of ``specs``, made by the writer's client (so counted
    in the run's ``api_calls``), and :func:`app.crm.provision.refusal` as the message."""
    # Imported here, as app.crm.factory does: a command loads only the CRM library it uses.
    from app.crm.hubspot.client import HubSpotClient
    from app.crm.hubspot.fields import HubSpotFields
    from app.crm.salesforce.client import SalesforceClient
    from app.crm.salesforce.fields import SalesforceFields

    reader: FieldReader
    if isinstance(writer, SalesforceClient):
        reader = SalesforceFields(writer)
    elif isinstance(writer, HubSpotClient):
        reader = HubSpotFields(writer)
    else:
        raise ConfigError(f"no field reader for the {writer.name} writer {type(writer).__name__}")
    objects = tuple(dict.fromkeys(s.object_name for s in specs))
    problems = compare(specs, reader.read_fields(objects)) if objects else []
    return refusal(problems) if problems else None


def specs_key(specs: Sequence[FieldSpec]) -> str:
    """The cache key of one object's target fields: a hash of their specs, so a mapping that
    adds or changes a target field is checked again at once."""
    text = "\n".join(sorted(repr(s) for s in specs))
    return hashlib.sha256(text.encode()).hexdigest()


class CachedTargets:
    """:class:`~app.sync.push_ports.TargetGuard` of one push command: checks the target fields of
    the objects it pushes at most once, and only those whose last passed check (cached in
    ``sync_cursors``, stream ``targets``) is older than ``ttl`` or was of another field set.

    ``client`` gives the push's writer (built just before the first write): the check's reads
    are the push's calls, in its run row and its preview."""

    def __init__(
        self,
        store: SqlPushStore,
        crm: CrmName,
        specs: Sequence[FieldSpec],
        *,
        ttl: timedelta,
        check: TargetCheck,
        client: Callable[[], CrmWriter],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.crm, self.ttl = store, crm, ttl
        self._check, self._client, self._clock = check, client, clock
        by_object: dict[str, list[FieldSpec]] = {}
        for spec in specs:
            by_object.setdefault(spec.object_name, []).append(spec)
        self.specs = {name: tuple(group) for name, group in by_object.items()}
        self.keys = {name: specs_key(group) for name, group in self.specs.items()}
        self._done = False
        self._stale: list[str] | None = None

    def stale(self) -> list[str]:
        """Objects whose fields need reading now (no database write)."""
        if self._done:
            return []
        if self._stale is None:
            cached = self.store.target_checks(self.crm, list(self.keys))
            now = self._clock()
            self._stale = [
                name
                for name, key in self.keys.items()
                if name not in cached or cached[name][0] != key or now - cached[name][1] > self.ttl
            ]
        return self._stale

    def planned_calls(self) -> int:
        return len(self.stale())

    def check(self) -> None:
        stale = self.stale()
        if stale:
            specs = [s for name in stale for s in self.specs[name]]
            message = self._check(self._client(), specs)
            if message:
                raise MissingTargetsError(message)
            self.store.save_target_checks(
                self.crm, {name: self.keys[name] for name in stale}, self._clock()
            )
            log.info("push.targets_checked", crm=self.crm, objects=stale)
        self._done, self._stale = True, []


# --------------------------------------------------------------------------------------------
# what a create carries besides the mapped fields
# --------------------------------------------------------------------------------------------


def _account_create(crm: CrmName) -> CreateExtras:
    """An account made on the CS side is created with its name (both CRMs require one)."""
    name_field = "Name" if crm == "salesforce" else "name"

    def extras(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[Association]] | None:
        if not row.get("name"):
            return None
        return {name_field: row["name"]}, []

    return extras


def _note_create(crm: CrmName) -> CreateExtras:
    """A note is created on its parent (Salesforce ``ParentId``, HubSpot associations) and
    waits while its parent has no id in this CRM."""

    def extras(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[Association]] | None:
        fields, links = note_extras(crm, row)
        if crm == "salesforce" and not fields.get("ParentId"):
            return None
        if crm == "hubspot" and not links:
            return None
        return dict(fields), [Association(o, i, t) for o, i, t in links]

    return extras


def create_rules(crm: CrmName, mappings: Mapping[str, ObjectMapping]) -> dict[str, CreateExtras]:
    """Objects whose CS-side rows are created in the CRM: accounts and notes. Opportunities
    are not (a deal needs its stage, amount and close date, which the CRM owns)."""
    rules: dict[str, CreateExtras] = {}
    for name, mapping in mappings.items():
        if mapping.cs_table == "accounts":
            rules[name] = _account_create(crm)
        elif mapping.cs_table == "handover_notes":
            rules[name] = _note_create(crm)
    return rules


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------


@dataclass
class PushOutcome:
    """One push command: a run per object (none for a dry run) and, for a dry run, the preview
    of each object (per record old -> new, and the calls the push will make)."""

    crm: CrmName
    dry_run: bool
    results: list[RunResult] = field(default_factory=list)
    previews: list[ObjectPreview] = field(default_factory=list)
    #: The token request the writer makes before its first write (see :func:`login_calls`).
    login_calls: int = 0
    #: The target-field check's reads before the first write (0 while its cache is fresh).
    check_calls: int = 0

    @property
    def planned_calls(self) -> int:
        """Every call the push makes without faults: the writes, plus the login and the
        target-field check when it writes anything. For a real push: what its runs planned."""
        if not self.dry_run:
            return sum(int(r.extra.get("planned_calls", 0)) for r in self.results)
        writes = sum(p.planned_calls for p in self.previews)
        return writes + self.login_calls + self.check_calls if writes else 0

    def summary(self, limit: int | None = None, offset: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"crm": self.crm, "dry_run": self.dry_run}
        if self.dry_run:
            out["planned_calls"] = self.planned_calls
            out["login_calls"] = self.login_calls if self.planned_calls else 0
            out["check_calls"] = self.check_calls if self.planned_calls else 0
            out["objects"] = [p.as_dict(limit, offset) for p in self.previews]
        else:
            out["runs"] = [r.summary() for r in self.results]
        return out


def login_calls(settings: Settings, crm: CrmName) -> int:
    """Requests the writer makes for a token before it writes: none with a configured access
    token (Salesforce: with its instance URL; a HubSpot private app), else one (a Salesforce
    client-credentials, JWT or refresh-token login; a HubSpot OAuth refresh)."""
    if crm == "salesforce":
        configured = settings.salesforce_access_token and settings.salesforce_instance_url
        return 0 if configured else 1
    oauth = settings.hubspot_refresh_token is not None or settings.hubspot_client_id is not None
    return 1 if oauth and settings.hubspot_access_token is None else 0


class PushInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped the push: ``outcome`` holds the runs so far."""

    def __init__(self, outcome: PushOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


def push_objects(settings: Settings, crm: CrmName, objects: Sequence[str] | None) -> MappingSet:
    """The mapping set of ``crm``, checked: configured, and the objects known and pushable."""
    if crm not in settings.enabled_crms:
        raise ConfigError(f"{crm} is not configured: its URL or credentials are missing")
    mapping_set = load_mapping_set(
        crm, settings.mapping_file, default_currency=settings.default_currency
    )
    known = {m.crm_object: m for m in mapping_set}
    unknown = [o for o in objects or () if o not in known]
    if unknown:
        raise ConfigError(
            f"unknown {crm} object(s) {', '.join(unknown)}; known: "
            f"{', '.join(mapping_set.object_names)}"
        )
    return mapping_set


def run_push(
    settings: Settings,
    crm: CrmName,
    objects: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    only_row_ids: Mapping[str, Sequence[int]] | None = None,
    triggered_by: str = "cli",
    session_factory: sessionmaker[Session] | None = None,
    on_commit: Callable[[PushProgress], None] | None = None,
    targets: TargetCheck = provision_check,
    writer_factory: Callable[[Settings, CrmName], CrmWriter] = build_writer,
) -> PushOutcome:
    """Push (or with ``dry_run`` preview) ``objects`` (default: every object with outbound
    fields) of ``crm``; ``only_row_ids`` pushes just those rows of an object.

    Raises :class:`ConfigError` before any run for a CRM that is not configured or an unknown
    object, and :class:`MissingTargetsError` when target fields are missing. After that one
    object's failure does not skip the others; SIGINT/SIGTERM raises :class:`PushInterrupted`.
    """
    mapping_set = push_objects(settings, crm, objects)
    mappings = {m.crm_object: m for m in mapping_set}
    wanted = list(objects) if objects else list(only_row_ids or ()) or list(mappings)
    ordered = [o for o in mapping_set.object_names if o in wanted and mappings[o].outbound_fields]
    own_engine = None
    if session_factory is None:
        own_engine = make_engine(settings.database_url)
        session_factory = make_session_factory(own_engine)
    outcome = PushOutcome(crm, dry_run, login_calls=login_calls(settings, crm))
    built: list[CrmWriter] = []

    def writer() -> CrmWriter:
        made = writer_factory(settings, crm)
        built.append(made)
        # Salesforce notes have no external id: their creates are guarded (h17-notes).
        return guard_note_creates(made, settings, session_factory)

    store = SqlPushStore(session_factory)
    pushed = {mappings[o].crm_object for o in ordered}
    guard = CachedTargets(
        store,
        crm,
        [s for s in target_specs(mapping_set) if s.object_name in pushed],
        ttl=timedelta(seconds=settings.push.target_check_ttl_seconds),
        check=targets,
        client=lambda: built[-1],
    )
    engine = PushEngine(
        store,
        crm,
        writer,
        mappings,
        DefaultPushTuning(
            lease_seconds=settings.sync.lease_seconds,
            retry_attempts=settings.push.retry_attempts,
        ),
        write_tuning(settings),
        creates=create_rules(crm, mappings),
        on_commit=on_commit,
        targets=guard,
    )
    try:
        with fewer_gc_passes():
            if dry_run:
                # The preview plans; a real push plans once, inside its runs (no preview pass).
                outcome.previews = [
                    engine.preview(o, only_row_ids=_chosen(only_row_ids, o)) for o in ordered
                ]
                if any(p.records for p in outcome.previews):
                    outcome.check_calls = guard.planned_calls()
                return outcome
            for name in ordered:
                try:
                    outcome.results.append(
                        engine.push(
                            name,
                            only_row_ids=_chosen(only_row_ids, name),
                            triggered_by=triggered_by,
                        )
                    )
                except PassInterrupted as exc:
                    outcome.results.append(exc.result)
                    raise PushInterrupted(outcome) from exc
        return outcome
    finally:
        for made in built:
            close = getattr(made, "close", None)
            if callable(close):
                close()
        if own_engine is not None:
            own_engine.dispose()


def _chosen(only_row_ids: Mapping[str, Sequence[int]] | None, name: str) -> Sequence[int] | None:
    if only_row_ids is None:
        return None
    return only_row_ids.get(name, ())
