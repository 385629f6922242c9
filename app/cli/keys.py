"""``crmsync keys create|list|revoke``: API keys of the admin API, managed on the server.

Works on the database directly (no key needed: whoever runs commands on the server already
holds its database), which is how the first admin key is made when
``CRMSYNC_ADMIN_BOOTSTRAP_KEY`` is not used. ``create`` prints the key once; only its hash is
stored. Each create and revoke is written to the audit log as ``cli:<user>``.
"""

from __future__ import annotations

import typer

from app.cli.common import ExitCode, load_settings, open_database
from app.cli.output import JSON_OPTION, cli_actor, print_json, print_table, stdout, wants_json
from app.core.access import Role

keys_app = typer.Typer(help="Create, list and revoke API keys of the admin API.")

ROLES = ", ".join(r.value for r in Role)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"crmsync: {message}", err=True)
    return typer.Exit(code=ExitCode.USAGE)


@keys_app.command("create")
def create(
    role: str = typer.Option(..., "--role", help=f"{ROLES}."),
    name: str = typer.Option(..., "--name", help="Who or what uses the key (unique)."),
    expires: int = typer.Option(None, "--expires", help="Days until the key expires."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a key and print it once: store it now, it cannot be shown again."""
    # The database layer loads with the command, not with the CLI.
    from app.db.api_keys import ApiKeyError, create_key, key_dict
    from app.db.audit import record_audit
    from app.db.engine import make_session_factory

    try:
        chosen = Role(role)
    except ValueError:
        raise _fail(f"--role {role!r}: expected one of {ROLES}") from None
    if expires is not None and expires < 1:
        raise _fail("--expires: at least 1 day")
    settings = load_settings()
    engine = open_database(settings, migrated=True)
    try:
        with make_session_factory(engine)() as session:
            try:
                row, key = create_key(session, name=name, role=chosen, expires_in_days=expires)
            except ApiKeyError as exc:
                raise _fail(f"--name: {exc}") from None
            record_audit(
                session,
                cli_actor(),
                "api_key.create",
                f"api_key:{row.id}",
                {"name": row.name, "role": row.role, "expires_days": expires},
            )
            session.commit()
            out = {**key_dict(row), "key": key}
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json(out)
        return
    stdout.print(f"API key {out['id']} ({out['name']}, {out['role']}): shown once, store it now")
    stdout.print(key, markup=False, highlight=False)
    expiry = out["expires_at"] or "never"
    stdout.print(f"expires: {expiry}; send it as `Authorization: Bearer <key>` or `X-API-Key`")


@keys_app.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """List the keys (id, name, role, prefix, state, dates); never the keys themselves."""
    from app.db.api_keys import key_dict, list_keys
    from app.db.engine import make_session_factory

    settings = load_settings()
    engine = open_database(settings, migrated=True)
    try:
        with make_session_factory(engine)() as session:
            rows = [key_dict(k) for k in list_keys(session)]
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json({"keys": rows})
        return
    print_table(
        "API keys",
        rows,
        ["id", "name", "role", "prefix", "state", "created_at", "expires_at", "last_used_at"],
        empty="no API keys: create one with `crmsync keys create --role admin --name NAME`",
    )


@keys_app.command("revoke")
def revoke(
    key_id: int = typer.Argument(..., help="The key's id (crmsync keys list)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from app.db.api_keys import ApiKeyError, key_dict, revoke_key
    from app.db.audit import record_audit
    from app.db.engine import make_session_factory

    settings = load_settings()
    engine = open_database(settings, migrated=True)
    try:
        with make_session_factory(engine)() as session:
            try:
                row = revoke_key(session, key_id)
            except ApiKeyError as exc:
                raise _fail(str(exc)) from None
            record_audit(
                session, cli_actor(), "api_key.revoke", f"api_key:{row.id}", {"name": row.name}
            )
            session.commit()
            out = key_dict(row)
    finally:
        engine.dispose()
    if wants_json(as_json):
        print_json(out)
        return
    stdout.print(f"API key {out['id']} ({out['name']}) revoked at {out['revoked_at']}")
