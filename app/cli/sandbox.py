"""``crmsync sandbox``: serve the Salesforce + HubSpot emulators on one HTTPS port until Ctrl-C.

Salesforce answers under ``/services/``, HubSpot under ``/crm/``, the control API under
``/__sandbox/``, all on ``--port``. On start it writes ``--info-file`` (JSON) and, with
``--env-file``, the ``CRMSYNC_...`` settings that point crmsync at it, then prints one
``key: value`` line per fact (easy to parse). Registered by ``app.cli.main`` as
``cli.command("sandbox")(sandbox)``.

The env file is often ``.env``, where users keep real settings and tokens: it is overwritten only
when the sandbox wrote it (its first line is :data:`~crmsync_sandbox.info.ENV_FILE_HEADER`), or with
``--force``. A port already in use is a two-line message and exit code 2, not a traceback.

The sandbox is an extra (``crmsync[sandbox]``, the crmsync-sandbox distribution): this module
imports it only inside its functions, so importing it costs nothing and works without it.
:mod:`app.cli.main` registers the command only when the sandbox is installed.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from app.cli.common import ExitCode, startup_done

if TYPE_CHECKING:
    from crmsync_sandbox.context import SandboxConfig
    from crmsync_sandbox.info import SandboxInfo

__all__ = ["build_config", "check_env_file", "parse_custom_field", "sandbox"]

HUBSPOT_OBJECTS = {"companies", "deals", "notes", "contacts"}


def parse_custom_field(spec: str) -> tuple[str, str, str]:
    """``'Account.Foo__c:double'`` -> ``('Account', 'Foo__c', 'double')``."""
    target, sep, field_type = spec.partition(":")
    object_name, dot, name = target.partition(".")
    if not (sep and dot and object_name and name and field_type):
        raise typer.BadParameter(f"{spec!r}: expected OBJECT.FIELD:TYPE (Account.Foo__c:double)")
    return object_name, name, field_type


def build_config(
    *,
    host: str,
    port: int,
    seed: int,
    accounts: int,
    state_dir: Path | None,
    hubspot_webhook_url: str | None,
    salesforce_webhook_url: str | None,
    no_rate_limits: bool,
    faults: list[str],
    custom_fields: list[str],
    emit_seed_webhooks: bool = False,
    jwt_certificate: Path | None = None,
    without_writeback_fields: bool = False,
    no_customize_application: bool = False,
) -> SandboxConfig:
    """The CLI flags as a :class:`SandboxConfig`; bad values raise ``typer.BadParameter``."""
    from crmsync_sandbox.context import SandboxConfig
    from crmsync_sandbox.faults import parse_fault_spec

    for spec in faults:
        try:
            parse_fault_spec(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--fault") from None
    sf_fields: dict[str, dict[str, str]] = {}
    hs_props: dict[str, dict[str, str]] = {}
    for spec in custom_fields:
        object_name, name, field_type = parse_custom_field(spec)
        # HubSpot object types are lower-case plurals; Salesforce sObjects are capitalised.
        target = hs_props if object_name in HUBSPOT_OBJECTS else sf_fields
        target.setdefault(object_name, {})[name] = field_type
    return SandboxConfig(
        seed=seed,
        accounts=accounts,
        host=host,
        port=port,
        state_dir=state_dir,
        sf_custom_fields=sf_fields,
        hs_custom_properties=hs_props,
        hs_rate_limits=not no_rate_limits,
        webhook_url_hubspot=hubspot_webhook_url,
        webhook_url_salesforce=salesforce_webhook_url,
        faults=list(faults),
        emit_seed_webhooks=emit_seed_webhooks,
        sf_jwt_certificate=jwt_certificate,
        without_writeback_fields=without_writeback_fields,
        sf_customize_application=not no_customize_application,
    )


def check_env_file(env_file: Path | None, *, force: bool) -> None:
    """Refuse (exit 2) to overwrite an env file the sandbox did not write, unless ``force``."""
    from crmsync_sandbox.info import written_by_sandbox

    if env_file is not None and env_file.is_dir():
        print(
            f"crmsync sandbox: --env-file {env_file} is a directory; name a file.", file=sys.stderr
        )
        raise typer.Exit(code=ExitCode.USAGE)
    if env_file is None or force or written_by_sandbox(env_file):
        return
    print(
        f"crmsync sandbox: refusing to overwrite {env_file}: crmsync sandbox did not write it "
        "(it may hold your own settings and tokens).",
        file=sys.stderr,
    )
    print(
        "crmsync sandbox: move it away, pass --force, or use another --env-file "
        "(e.g. var/sandbox.env).",
        file=sys.stderr,
    )
    raise typer.Exit(code=ExitCode.USAGE)


def sandbox(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8440, help="Port for both CRMs and the control API (0 = free port)."),
    seed: int = typer.Option(42, help="Seed of the generated data (same seed, same data)."),
    accounts: int = typer.Option(500, help="Number of accounts/companies to seed."),
    state_dir: Path | None = typer.Option(
        None, help="Keep state in DIR/sandbox.db (survives a restart); default: memory."
    ),
    info_file: Path = typer.Option(Path("var/sandbox.json"), help="Where to write URLs/tokens."),
    env_file: Path | None = typer.Option(
        None, help="Also write CRMSYNC_... settings here (only over a file it wrote itself)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite --env-file even if crmsync sandbox did not write it."
    ),
    hubspot_webhook_url: str | None = typer.Option(None, help="Deliver HubSpot webhooks here."),
    salesforce_webhook_url: str | None = typer.Option(
        None, help="Deliver Salesforce Outbound Messages here."
    ),
    no_rate_limits: bool = typer.Option(False, "--no-rate-limits", help="Disable HubSpot limits."),
    emit_seed_webhooks: bool = typer.Option(
        False,
        "--emit-seed-webhooks",
        help="Send closed-won webhooks for the seed's won deals (to the webhook URLs).",
    ),
    fault: list[str] = typer.Option(
        [], "--fault", help="Route fault, repeatable: 'GET /crm/*:rate_limit=0.1,slow_ms=200'."
    ),
    custom_field: list[str] = typer.Option(
        [], "--custom-field", help="Custom field, repeatable: 'Account.Foo__c:double'."
    ),
    jwt_certificate: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Certificate (or public key) PEM that Salesforce JWTs must be signed for, as "
        "uploaded to a connected app; default: a pair generated in the sandbox's own dir.",
    ),
    without_writeback_fields: bool = typer.Option(
        False,
        "--without-writeback-fields",
        help="Start without crmsync's write-back fields and external ids (for crm setup).",
    ),
    no_customize_application: bool = typer.Option(
        False,
        "--no-customize-application",
        help="The Salesforce integration user may not create custom fields.",
    ),
) -> None:
    """Serve emulated Salesforce and HubSpot APIs over HTTPS on one port, until Ctrl-C."""
    startup_done()  # it loads no settings: the collector runs again (app.cli.common.start_up)
    from crmsync_sandbox.server import PortUnavailableError, Sandbox

    check_env_file(env_file, force=force)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = build_config(
        host=host,
        port=port,
        seed=seed,
        accounts=accounts,
        state_dir=state_dir,
        hubspot_webhook_url=hubspot_webhook_url,
        salesforce_webhook_url=salesforce_webhook_url,
        no_rate_limits=no_rate_limits,
        faults=fault,
        custom_fields=custom_field,
        emit_seed_webhooks=emit_seed_webhooks,
        jwt_certificate=jwt_certificate,
        without_writeback_fields=without_writeback_fields,
        no_customize_application=no_customize_application,
    )
    box = Sandbox(config, info_file=info_file, env_file=env_file)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    started = False
    try:
        info = box.start()
        started = True
        _print_facts(info, info_file, env_file)
        while not stop.is_set() and box.running:
            stop.wait(0.5)
    except PortUnavailableError as exc:
        fix = "pick another with --port N" if exc.in_use else "check --host and --port"
        busy = " (is a sandbox already running?)" if exc.in_use else ""
        print(f"crmsync sandbox: {exc}{busy}", file=sys.stderr)
        print(f"crmsync sandbox: {fix} (--port 0 picks a free one).", file=sys.stderr)
        raise typer.Exit(code=ExitCode.USAGE) from None
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()
        signal.signal(signal.SIGTERM, previous)
        if started:
            print("crmsync sandbox stopped", file=sys.stderr, flush=True)


def _print_facts(info: SandboxInfo, info_file: Path, env_file: Path | None) -> None:
    """One ``key: value`` line per fact, on stdout (scripts and tests parse them)."""
    sf, hs = info.salesforce, info.hubspot
    lines = [
        "crmsync sandbox is serving (Ctrl-C to stop)",
        f"salesforce_login_url: {sf.login_url}",
        f"salesforce_instance_url: {sf.instance_url}",
        f"salesforce_api_version: {sf.api_version}",
        f"salesforce_access_token: {sf.access_token}",
        f"salesforce_client_id: {sf.client_id}",
        f"salesforce_client_secret: {sf.client_secret}",
        f"salesforce_username: {sf.username}",
        f"salesforce_refresh_token: {sf.refresh_token}",
        f"salesforce_private_key_file: {sf.jwt_private_key_file or '(your own key)'}",
        f"salesforce_jwt_certificate: {sf.jwt_certificate_file}",
        f"hubspot_base_url: {hs.base_url}",
        f"hubspot_access_token: {hs.access_token}",
        f"hubspot_client_id: {hs.client_id}",
        f"hubspot_client_secret: {hs.client_secret}",
        f"hubspot_refresh_token: {hs.refresh_token}",
        f"hubspot_app_secret: {hs.app_secret}",
        f"ca_file: {info.ca_file}",
        f"control_url: {info.control_url}",
        f"info_file: {info_file}",
    ]
    if env_file is not None:
        lines.append(f"env_file: {env_file}")
    print("\n".join(lines), flush=True)
