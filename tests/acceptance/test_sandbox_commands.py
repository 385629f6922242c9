"""``crmsync sandbox`` and ``crmsync demo`` exist only with the sandbox extra installed.

Without it (the product wheel, the Docker image) ``crmsync --help`` does not offer them, and
calling them anyway prints one line saying how to get them, exit 2 (a configuration problem),
never a traceback or click's "No such command". A checkout's ``crmsync_sandbox/`` without its
own dependencies (lark, trustme) counts as not installed too.

"Not installed" is simulated in the crmsync process by blocking the import (a ``None`` entry in
``sys.modules``, which ``importlib.util.find_spec`` reports as absent); the real product-only
install is in test_packaged_install.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.main import SANDBOX_MODULES, sandbox_missing_message
from tests.support.cli import clean_env

RUN_BLOCKED = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    if name:\n"
    "        sys.modules[name] = None\n"
    "sys.argv = ['crmsync', *sys.argv[2:]]\n"
    "from app.cli.main import main\n"
    "main()\n"
)


def crmsync_without(
    blocked: str, *args: str, cwd: Path, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``crmsync *args`` in a process where the modules ``blocked`` (comma-separated) cannot be
    imported; ``settings`` become ``CRMSYNC_*`` variables."""
    return subprocess.run(
        [sys.executable, "-c", RUN_BLOCKED, blocked, *args],
        env={**clean_env(**settings), "COLUMNS": "120"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def listed_commands(help_text: str) -> set[str]:
    """Command names in ``--help`` (rich draws them in a box: ``│ name  help``)."""
    return {m.group(1) for m in re.finditer(r"^│ ([a-z][a-z-]*)\s", help_text, re.MULTILINE)}


def test_help_lists_the_sandbox_commands_when_the_extra_is_installed(tmp_path: Path) -> None:
    shown = crmsync_without("", "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert {"sandbox", "demo", "db", "sync", "serve"} <= listed_commands(shown.stdout)


@pytest.mark.parametrize("missing", SANDBOX_MODULES)
def test_help_hides_the_sandbox_commands_when_any_part_is_missing(
    missing: str, tmp_path: Path
) -> None:
    shown = crmsync_without(missing, "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    listed = listed_commands(shown.stdout)
    assert {"db", "sync", "serve"} <= listed
    assert listed.isdisjoint({"sandbox", "demo"}), listed


@pytest.mark.parametrize(
    ("missing", "args"),
    [
        ("crmsync_sandbox", ["sandbox", "--port", "8440", "--seed", "42", "--accounts", "500"]),
        ("crmsync_sandbox", ["demo"]),
        ("crmsync_sandbox", ["demo", "--help"]),
        ("lark", ["sandbox"]),
        ("trustme", ["demo", "--accounts", "5", "extra-argument"]),
    ],
)
def test_a_missing_sandbox_command_says_how_to_install_it(
    missing: str, args: list[str], tmp_path: Path
) -> None:
    refused = crmsync_without(missing, *args, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [sandbox_missing_message(args[0])]
    assert "pip install 'crmsync[sandbox]'" in refused.stderr
    assert "make dev" in refused.stderr
    assert not (tmp_path / "var").exists(), "nothing may run before the refusal"


def test_the_product_migrates_without_any_of_the_sandbox(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crmsync.db'}"
    blocked = ",".join(SANDBOX_MODULES)
    upgraded = crmsync_without(blocked, "db", "upgrade", cwd=tmp_path, database_url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    current = crmsync_without(blocked, "db", "current", cwd=tmp_path, database_url=url)
    assert current.returncode == 0, current.stdout + current.stderr
