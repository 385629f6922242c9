"""``crmsync csms import FILE`` as a user runs it: created, then unchanged on a second run; a bad
row is FILE:LINE: column: message and exit 2 with nothing written; no traceback."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Csm
from tests.support.cli import clean_env, run_crmsync

GOOD = (
    "name,email,tiers,capacity_units,region,is_pool\n"
    "Cara Csm,cara@example.com,key;high,100,EU,no\n"
    "Dan Csm,DAN@example.com,low,50,,\n"
    "Tech Pool,pool@example.com,tech,0,,yes\n"
)


def test_import_then_again(tmp_path: Path, database_url: str, session: Session) -> None:
    path = tmp_path / "csms.csv"
    path.write_text(GOOD, encoding="utf-8")
    env = clean_env(database_url=database_url)
    first = run_crmsync("csms", "import", str(path), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "file": str(path),
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "reassigned_accounts": 0,
    }
    again = run_crmsync("csms", "import", str(path), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["unchanged"] == 3
    pool = session.scalars(select(Csm).where(Csm.email == "pool@example.com")).one()
    assert pool.is_pool
    assert pool.tiers == ["tech"]
    assert pool.capacity_units == 0
    assert session.scalar(select(Csm.email).where(Csm.name == "Dan Csm")) == "dan@example.com"


def test_bad_rows_exit_2_and_write_nothing(
    tmp_path: Path, database_url: str, session: Session
) -> None:
    path = tmp_path / "csms.csv"
    path.write_text(GOOD + "Eve,eve@example,gold,,,\n", encoding="utf-8")
    result = run_crmsync(
        "csms", "import", str(path), env=clean_env(database_url=database_url), cwd=tmp_path
    )
    assert result.returncode == 2
    assert f"crmsync: {path}:5: email: not an e-mail address" in result.stderr
    assert f"{path}:5: tiers" in result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing imported" in result.stderr
    assert session.scalar(select(func.count()).select_from(Csm)) == 0


def test_missing_file_and_bad_header(tmp_path: Path, database_url: str) -> None:
    env = clean_env(database_url=database_url)
    missing = run_crmsync("csms", "import", str(tmp_path / "nope.csv"), env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    path = tmp_path / "csms.csv"
    path.write_text("name;mail\nCara;cara@example.com\n", encoding="utf-8")
    header = run_crmsync("csms", "import", str(path), env=env, cwd=tmp_path)
    assert header.returncode == 2
    assert f"{path}:1: mail: unknown column" in header.stderr
