"""app/logging.py loads structlog with the first line written at the configured level, and that
line is configured as if structlog had been configured up front (issue #18 item 10)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_calls_below_the_level_load_no_structlog() -> None:
    done = run(
        "import sys\n"
        "from app.logging import configure_logging, get_logger\n"
        "configure_logging('WARNING')\n"
        "log = get_logger('t')\n"
        "log.debug('d'); log.info('i', n=1)\n"
        "print('structlog' in sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert done.stderr == ""


def test_the_first_line_at_the_level_is_written_with_the_configured_output() -> None:
    """JSON on stderr (not a terminal), the level filter, the secret masking: the pending
    configuration is applied before the first line."""
    done = run(
        "from app.logging import configure_logging, get_logger\n"
        "configure_logging('INFO')\n"
        "log = get_logger('t')\n"
        "log.debug('dropped')\n"
        "log.info('first', api_key='abc', n=1)\n"
        "log.warning('second')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("first", "info"),
        ("second", "warning"),
    ]
    assert lines[0]["api_key"] == "**********"
    assert lines[0]["n"] == 1
    assert "timestamp" in lines[0]
