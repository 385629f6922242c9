"""``crmsync crm check [--crm X]``: is this org ready for crmsync? Log in and compare.
``crmsync crm setup [--crm X] [--dry-run]``: create the fields crmsync writes back.

For each configured CRM (or the one named): log in, read the API version, the daily API budget,
Bulk API 2.0 availability and the objects and fields the mappings need (including whether the
fields crmsync writes back are updateable), then print a table on a terminal (JSON otherwise).

Exit codes: 0 ready (warnings allowed); 2 something needed is missing (each problem's fix is
printed on stderr) or the credentials are rejected; 1 the CRM could not be reached. The I/O is
in ``app.crm.<crm>.org``, the comparison in :mod:`app.crm.check`.

``setup`` reads each mapped object's fields once (Salesforce describe, HubSpot properties),
creates the missing write-back fields and external ids (HubSpot: properties in the group
``crmsync``; Salesforce: custom fields through the Tooling API, where the user may) and prints
what a human must do: fields it may not create, mistyped or read-only fields, refused creates.
Exit codes: 0 nothing left to do (``--dry-run``: nothing a human must do); 2 something needs
a human (each on stderr, with the API name, type and size); 1 the CRM could not be reached.
The decisions are :func:`app.crm.provision.setup`, the calls ``app.crm.<crm>.fields``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer

from app.cli.common import ExitCode, console, exit_code_for, load_settings, report_error
from app.crm.base import CrmName
from app.errors import CrmsyncError

# The comparison, the provisioning, the mappings and the retry policy (which imports the
# settings: pydantic, SQLAlchemy) load when a check or a setup runs, not with the CLI.
if TYPE_CHECKING:
    from app.crm.check import Finding, OrgFacts
    from app.crm.provision import MissingField, SetupReport
    from app.mappers.spec import MappingSet
    from app.settings import Settings

crm_app = typer.Typer(help="Check a CRM org against what crmsync needs, and set it up.")

CHECK_ATTEMPTS = 3
#: Colour per :class:`app.crm.check.Status` value.
STYLE = {"ok": "green", "warn": "yellow", "missing": "red"}


def _crms(settings: Settings, crm: str | None) -> list[CrmName]:
    if crm is not None:
        if crm not in ("salesforce", "hubspot"):
            print(f"crmsync: --crm {crm!r}: expected salesforce or hubspot", file=sys.stderr)
            raise typer.Exit(ExitCode.USAGE)
        chosen: CrmName = "salesforce" if crm == "salesforce" else "hubspot"
        if chosen not in settings.enabled_crms:
            print(
                f"crmsync: {chosen} is not configured: its URL or credentials are missing",
                file=sys.stderr,
            )
            raise typer.Exit(ExitCode.USAGE)
        return [chosen]
    if not settings.enabled_crms:
        print(
            "crmsync: no CRM configured: set CRMSYNC_SALESFORCE_INSTANCE_URL with credentials "
            "or CRMSYNC_HUBSPOT_ACCESS_TOKEN",
            file=sys.stderr,
        )
        raise typer.Exit(ExitCode.USAGE)
    return list(settings.enabled_crms)


def read_facts(settings: Settings, crm: CrmName, objects: tuple[str, ...]) -> OrgFacts:
    """Log in to ``crm`` and read what the org offers (the adapters' retried calls).

    A check is interactive: :data:`CHECK_ATTEMPTS` tries with short waits, so a CRM that
    cannot be reached is reported in seconds rather than after a pull's full backoff.
    """
    from app.crm.retry import RetryPolicy

    policy = RetryPolicy(max_attempts=CHECK_ATTEMPTS, max_wait=2.0, jitter=0.2)
    if crm == "salesforce":
        from app.crm.salesforce.client import SalesforceClient
        from app.crm.salesforce.org import read_org as read_salesforce

        with SalesforceClient(settings, policy=policy) as sf:
            return read_salesforce(sf, objects)
    from app.crm.hubspot.client import HubSpotClient
    from app.crm.hubspot.org import read_org as read_hubspot

    with HubSpotClient(settings, policy=policy) as hs:
        return read_hubspot(hs, objects)


def _render(crm: CrmName, found: list[Finding]) -> None:
    from rich.table import Table

    table = Table(title=f"crmsync crm check: {crm}")
    for column in ("check", "subject", "status", "detail"):
        table.add_column(column, overflow="fold")
    for f in found:
        status = f"[{STYLE[f.status]}]{f.status}[/]"
        table.add_row(f.check, f.subject, status, f.detail)
    console.print(table)


@crm_app.command("check")
def check(
    crm: str = typer.Option(None, "--crm", help="salesforce or hubspot (default: all configured)."),
) -> None:
    """Log in and report the API version, daily API budget, Bulk API 2.0 and the mapped fields."""
    from app.crm.check import Status, findings, needs_from, worst
    from app.mappers.config import load_mapping_set

    settings = load_settings()
    code = ExitCode.OK
    report: dict[str, Any] = {}
    for name in _crms(settings, crm):
        mappings = load_mapping_set(
            name, settings.mapping_file, default_currency=settings.default_currency
        )
        needs = needs_from(mappings)
        try:
            facts = read_facts(settings, name, mappings.object_names)
        except CrmsyncError as exc:
            failed = report_error(exc)
            report[name] = {
                "status": "unreachable",
                "error": str(exc),
                "exit": exit_code_for(exc.category).value,
            }
            code = max(code, failed)
            continue
        found = findings(facts, needs)
        report[name] = {
            "status": str(worst(found)),
            "findings": [{**asdict(f), "status": str(f.status)} for f in found],
        }
        if sys.stdout.isatty():
            _render(name, found)
        for f in found:
            if f.status is Status.MISSING:
                print(f"crmsync: {name} {f.subject}: {f.detail}; fix: {f.fix}", file=sys.stderr)
        if worst(found) is Status.MISSING:
            code = max(code, ExitCode.USAGE)
    if not sys.stdout.isatty():
        typer.echo(json.dumps({"crms": report}, indent=2))
    raise typer.Exit(code)


# -- setup ----------------------------------------------------------------------------------------


def run_setup(
    settings: Settings, crm: CrmName, mappings: MappingSet, *, dry_run: bool
) -> SetupReport:
    """Log in to ``crm`` and provision the target fields of ``mappings`` (interactive retries)."""
    from app.crm.provision import setup
    from app.crm.retry import RetryPolicy

    policy = RetryPolicy(max_attempts=CHECK_ATTEMPTS, max_wait=2.0, jitter=0.2)
    if crm == "salesforce":
        from app.crm.salesforce.client import SalesforceClient
        from app.crm.salesforce.fields import SalesforceFields

        with SalesforceClient(settings, policy=policy) as sf:
            return setup(SalesforceFields(sf), mappings, dry_run=dry_run)
    from app.crm.hubspot.client import HubSpotClient
    from app.crm.hubspot.fields import HubSpotFields

    with HubSpotClient(settings, policy=policy) as hs:
        return setup(HubSpotFields(hs), mappings, dry_run=dry_run)


def _field_json(m: MissingField) -> dict[str, Any]:
    return {
        "field": m.spec.full_name,
        "problem": str(m.problem),
        "type": m.type,
        "label": m.label,
        "length": m.length,
        "precision": m.precision,
        "scale": m.scale,
        "options": list(m.options),
        "detail": m.detail,
        "fix": m.fix(),
    }


def _setup_json(report: SetupReport) -> dict[str, Any]:
    return {
        "status": report.status,
        "dry_run": report.dry_run,
        "planned": [_field_json(m) for m in report.planned],
        "created": [s.full_name for s in report.created],
        "existed": [s.full_name for s in report.existed],
        "manual": [_field_json(m) for m in report.manual],
        "refused": report.refused,
    }


def _render_setup(report: SetupReport) -> None:
    from rich.table import Table

    mode = " (dry run)" if report.dry_run else ""
    table = Table(title=f"crmsync crm setup: {report.crm}{mode}")
    for column in ("field", "type", "action", "detail"):
        table.add_column(column, overflow="fold")
    done = {s.full_name: "created" for s in report.created}
    done.update({s.full_name: "exists" for s in report.existed})
    manual = {m.spec.full_name for m in report.manual}
    for m in report.planned:
        if m.spec.full_name in manual:
            continue
        action = done.get(m.spec.full_name, "create" if report.dry_run else "?")
        table.add_row(m.spec.full_name, m.spec.describe(), f"[green]{action}[/]", m.detail)
    for m in report.manual:
        table.add_row(m.spec.full_name, m.spec.describe(), "[red]by hand[/]", m.detail)
    if not report.planned and not report.manual:
        table.add_row("(all target fields)", "", "[green]nothing to do[/]", "")
    console.print(table)


@crm_app.command("setup")
def setup_command(
    crm: str = typer.Option(None, "--crm", help="salesforce or hubspot (default: all configured)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; create nothing."),
) -> None:
    """Create the fields crmsync writes back (and its external ids); print what needs a human."""
    from app.mappers.config import load_mapping_set

    settings = load_settings()
    code = ExitCode.OK
    report: dict[str, Any] = {}
    for name in _crms(settings, crm):
        mappings = load_mapping_set(
            name, settings.mapping_file, default_currency=settings.default_currency
        )
        try:
            outcome = run_setup(settings, name, mappings, dry_run=dry_run)
        except CrmsyncError as exc:
            failed = report_error(exc)
            report[name] = {
                "status": "unreachable",
                "error": str(exc),
                "exit": exit_code_for(exc.category).value,
            }
            code = max(code, failed)
            continue
        report[name] = _setup_json(outcome)
        if sys.stdout.isatty():
            _render_setup(outcome)
        if outcome.refused:
            print(f"crmsync: {name} refused to create fields: {outcome.refused}", file=sys.stderr)
        for m in outcome.manual:
            print(f"crmsync: {name} {m.message()}", file=sys.stderr)
        if outcome.manual:
            code = max(code, ExitCode.USAGE)
    if not sys.stdout.isatty():
        typer.echo(json.dumps({"crms": report}, indent=2))
    raise typer.Exit(code)
