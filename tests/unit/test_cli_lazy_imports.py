"""Starting ``crmsync`` must not import what its command does not use (issue #18 item 10).

A no-input ``crmsync health recompute`` takes about 0.1 s in-process; the rest of its wall time
was the interpreter importing every command's dependencies (the web stack, both CRM clients, the
job queue, the sandbox) because ``app.cli.main`` imports every command module. The command
modules now import those inside the commands; these checks run a fresh interpreter, so that an
import added at module level again shows up here rather than as a slower CLI.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Libraries no command needs to be registered, and that only some commands use when they run.
HEAVY = frozenset(
    {
        "fastapi",
        "uvicorn",
        "starlette",
        "jinja2",
        "simple_salesforce",
        "zeep",
        "hubspot",
        "httpx",
        "requests",
        "huey",
        "redis",
        "crmsync_sandbox",
        "lark",
        "trustme",
    }
)
#: Loaded by the commands that open the database, not by the CLI's start-up (`crmsync --help`).
DATABASE = frozenset({"sqlalchemy", "psycopg", "alembic"})


def _without_crmsync(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith("CRMSYNC_")}


def loaded_roots(code: str, env: dict[str, str] | None = None, depth: int = 1) -> set[str]:
    """The top-level packages (``depth`` 2: and their sub-packages, ``app.crm``) a fresh
    interpreter has imported once ``code`` has run (also when it ends with SystemExit, as a
    typer command does), with ``env`` added to the environment."""
    prelude = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted({'.'.join(m.split('.')[:"
        f"{depth}]) for m in sys.modules}}))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=None if env is None else {**_without_crmsync(os.environ), **env},
    )
    assert done.stdout.strip(), done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_library_nor_the_database() -> None:
    loaded = loaded_roots("import app.cli.main")
    assert "typer" in loaded  # the probe sees what was imported
    assert sorted(loaded & (HEAVY | DATABASE)) == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["status", "--help"], ["health", "recompute", "--help"]],
    ids=["help", "status-help", "recompute-help"],
)
def test_a_command_s_help_loads_no_heavy_library(argv: list[str]) -> None:
    loaded = loaded_roots(
        f"sys.argv = ['crmsync', *{argv!r}]\nfrom app.cli.main import main\nmain()\n"
    )
    assert "typer" in loaded
    assert sorted(loaded & (HEAVY | DATABASE)) == []


def test_the_schema_check_of_a_migrated_database_loads_no_alembic(tmp_path: Path) -> None:
    """Every command that opens the database checks its revision first; at head that is a plain
    SELECT and the migration files' names, not Alembic and its scripts (a tenth of a second)."""
    url = f"sqlite:///{tmp_path / 'head.db'}"
    from app.db.migrate import upgrade

    upgrade(url)
    loaded = loaded_roots(
        "from app.db.engine import make_engine\n"
        "from app.db.migrate import require_current_schema\n"
        f"require_current_schema(make_engine({url!r}), {url!r})\n"
    )
    assert "sqlalchemy" in loaded
    assert "alembic" not in loaded


def test_what_health_recompute_runs_loads_no_crm_client_nor_web_stack() -> None:
    """The modules the command imports when it runs (without ``--push``): the database and the
    scoring, but no CRM client, HTTP library, job queue or web framework."""
    loaded = loaded_roots(
        "import app.cli.main, app.cli.health\n"
        "import app.db.engine, app.wiring.recompute, rich.progress, rich.table\n"
    )
    assert "sqlalchemy" in loaded  # the probe sees the database layer it needs
    # psycopg too: app.db.bulk imports it on a failed write, so SQLite never loads it.
    assert sorted(loaded & (HEAVY | {"psycopg"})) == []


def test_a_no_input_recompute_loads_no_log_library_rich_nor_alembic(tmp_path: Path) -> None:
    """The whole command as the benchmark runs it (off a terminal, ``CRMSYNC_LOG_LEVEL=WARNING``,
    a migrated database, nothing to recompute): it writes no log line, so structlog stays
    unloaded; it prints JSON, so rich does; the schema is at head, so Alembic does."""
    url = f"sqlite:///{tmp_path / 'head.db'}"
    from app.db.migrate import upgrade

    upgrade(url)
    env = {"CRMSYNC_DATABASE_URL": url, "CRMSYNC_LOG_LEVEL": "WARNING", "CRMSYNC_DEBUG": "1"}
    loaded = loaded_roots(
        "sys.argv = ['crmsync', 'health', 'recompute']\nfrom app.cli.main import main\nmain()\n",
        env,
    )
    assert "sqlalchemy" in loaded  # the probe sees the database layer the command used
    assert sorted(loaded & {"structlog", "rich", "alembic", "psycopg", "pygments"}) == []


def test_a_recompute_loads_neither_the_crm_adapters_nor_the_mappings() -> None:
    """The recompute (without ``--push``) reads and writes the CS database only: the CRM
    adapters, the field mappings, the web and job layers stay unloaded (the mappings and both
    CRM clients' factory were pulled in through the sync wiring for one helper). ``app.crm.base``
    (the cursor types the run bookkeeping shares) is allowed."""
    loaded = loaded_roots("import app.cli.main, app.cli.health, app.wiring.recompute\n", depth=3)
    assert "app.wiring.recompute" in loaded  # the probe sees what it imported
    unwanted = sorted(
        m
        for m in loaded
        if m.startswith(("app.mappers", "app.api", "app.jobs", "app.crm.")) and m != "app.crm.base"
    )
    assert unwanted == []


def test_the_collector_is_paused_from_the_start_until_settings_are_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """app.cli.common.start_up / startup_done: no collector passes while a command loads its
    modules, the collector on again for the command's work, and left alone when not paused."""
    from app.cli.common import load_settings, start_up, startup_done

    monkeypatch.setenv("CRMSYNC_DATABASE_URL", "sqlite://")
    assert gc.isenabled()
    try:
        start_up()
        assert not gc.isenabled()
        load_settings()
        assert gc.isenabled()
        gc.disable()  # someone else's pause (a recompute's chunk) is not ended by it
        startup_done()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_the_signal_kinds_the_cli_names_are_the_row_models() -> None:
    """`crmsync signals import --help` names the kinds without building the row models."""
    from app.cli.signals_import import KINDS as CLI_KINDS
    from app.domain.signal_rows import KINDS

    assert CLI_KINDS == KINDS
