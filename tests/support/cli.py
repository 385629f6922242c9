"""Run ``crmsync`` as a user does, in a subprocess, with an environment free of the caller's
``CRMSYNC_*`` settings (and of a ``.env``: run it in a ``cwd`` of the test's own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crmsync_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**settings: str) -> dict[str, str]:
    """The test process's environment minus every ``CRMSYNC_*`` variable, plus ``settings``
    (``database_url="..."`` -> ``CRMSYNC_DATABASE_URL``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"CRMSYNC_{name.upper()}": value for name, value in settings.items()})
    return env


def sandbox_settings(sb: Sandbox) -> dict[str, str]:
    """The ``CRMSYNC_*`` variables that point crmsync at ``sb`` (what ``--env-file`` writes)."""
    return sb.info.env()


def run_crmsync(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
