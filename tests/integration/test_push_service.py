"""``run_push`` (the wiring), ``GET /api/v1/push/preview`` and ``crmsync push`` without a CRM:
the writer is the in-memory one, the target check a stand-in; the engine and database are real."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.runs import RunStatus
from app.core.types import CrmName
from app.crm.provision import FieldSpec
from app.db.cs_writes import stamp_cs_change
from app.db.engine import make_session_factory
from app.db.models import Account, HandoverNote, PushLedgerEntry, SyncCursor, SyncRun
from app.errors import ConfigError
from app.main import create_app
from app.settings import Settings
from app.sync.run_scope import RunResult
from app.wiring.push import MissingTargetsError, run_push
from tests.support.api import api_client
from tests.support.cli import clean_env, run_crmsync
from tests.support.fake_writer import FakeWriter


def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        salesforce_instance_url="https://sf.invalid",
        salesforce_access_token=SecretStr("token"),
    )


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def changed(factory: sessionmaker[Session]) -> list[int]:
    """250 pulled accounts whose health the CS side then computed."""
    ids = []
    with factory() as s, s.begin():
        for i in range(1, 251):
            account = Account(name=f"A{i}", sf_id=f"001{i:015d}", health_score=i % 100)
            account.renewal_on = date(2027, 1, 1)
            stamp_cs_change(
                account,
                ["health_score", "renewal_on"],
                datetime.now(UTC) - timedelta(minutes=10),
            )
            s.add(account)
            s.flush()
            ids.append(account.id)
    return ids


def crm_with(n: int) -> FakeWriter:
    writer = FakeWriter()
    for i in range(1, n + 1):
        writer.records[f"001{i:015d}"] = {}
    return writer


def no_missing(calls: list[str]) -> object:
    """A target check that finds everything, reading one "describe" per object through the
    push's writer (so its calls are the writer's, as the real check's are)."""

    def check(writer: FakeWriter, specs: Sequence[FieldSpec]) -> str | None:
        objects = sorted({s.object_name for s in specs})
        calls.extend(objects)
        writer.calls += len(objects)
        return None

    return check


def test_dry_run_lists_changes_and_the_push_makes_exactly_its_calls(
    database_url: str, factory: sessionmaker[Session], changed: list[int]
) -> None:
    built: list[int] = []
    writer = crm_with(250)

    def build(_s: Settings, _crm: CrmName) -> FakeWriter:
        built.append(1)
        return writer

    checked: list[str] = []
    config = settings(database_url)
    preview = run_push(config, "salesforce", dry_run=True, writer_factory=build)
    assert preview.results == []
    assert built == []
    (account, *_others) = preview.previews
    assert account.object_name == "Account"
    assert sum(p.planned_calls for p in preview.previews) == 2  # 250 updates: ceil(250 / 200)
    assert len(account.records) == 250
    summary = preview.summary(limit=2)
    assert summary["planned_calls"] == 4
    assert summary["check_calls"] == 2
    first = summary["objects"][0]["records"][0]
    assert {c["field"] for c in first["changes"]} >= {"Health_Score__c", "Days_To_Renewal__c"}
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(SyncRun)) == 0

    # One describe per object pushed (Account, Note; opportunities have no write-backs), never
    # checked yet.
    assert preview.check_calls == 2
    assert preview.planned_calls == 2 + 2

    outcome = run_push(
        config,
        "salesforce",
        writer_factory=build,
        targets=no_missing(checked),  # type: ignore[arg-type]
    )
    (result, *_rest) = outcome.results
    assert result.status is RunStatus.SUCCEEDED
    # The check's reads are the push's own calls: in the run row and in the preview.
    assert writer.calls == result.counts.api_calls == preview.planned_calls == 4
    assert result.extra["planned_calls"] == 4
    assert outcome.planned_calls == 4
    assert checked == ["Account", "Note"]
    with factory() as s:
        run = s.scalars(select(SyncRun).where(SyncRun.object == "Account")).one()
        assert run.api_calls == 4
    again = run_push(
        config,
        "salesforce",
        writer_factory=build,
        targets=no_missing(checked),  # type: ignore[arg-type]
    )
    assert [r.counts.api_calls for r in again.results] == [0] * len(again.results)
    assert len(checked) == 2  # nothing to write: no field check, no call


def _touch(factory: sessionmaker[Session], ids: list[int], score: int) -> None:
    with factory() as s, s.begin():
        for row_id in ids:
            account = s.get(Account, row_id)
            assert account is not None
            account.health_score = score
            stamp_cs_change(account, ["health_score"], datetime.now(UTC) - timedelta(minutes=5))


def test_a_passed_target_check_is_cached_until_its_ttl_or_a_new_field_set(
    database_url: str, factory: sessionmaker[Session], changed: list[int]
) -> None:
    writer = crm_with(250)
    checked: list[str] = []
    config = settings(database_url)

    def push(config: Settings) -> int:
        outcome = run_push(
            config,
            "salesforce",
            ["Account"],
            writer_factory=lambda _s, _c: writer,
            targets=no_missing(checked),  # type: ignore[arg-type]
        )
        (result,) = outcome.results
        assert result.status is RunStatus.SUCCEEDED
        assert result.counts.api_calls == result.extra["planned_calls"]
        return result.counts.api_calls

    assert push(config) == 2 + 1  # the updates, and one describe (only Account is pushed)
    assert checked == ["Account"]
    _touch(factory, changed[:10], 77)
    preview = run_push(config, "salesforce", ["Account"], dry_run=True)
    assert preview.check_calls == 0
    assert preview.planned_calls == 1
    assert push(config) == 1  # changes: written, the fields not read again
    assert checked == ["Account"]
    # A TTL of 0: every push that writes reads the fields again.
    expired = config.model_copy(
        update={"push": config.push.model_copy(update={"target_check_ttl_seconds": 0})}
    )
    _touch(factory, changed[:10], 78)
    assert push(expired) == 1 + 1
    assert checked == ["Account", "Account"]
    # Another field set (the cache key is a hash of the object's target fields): read again.
    with factory() as s, s.begin():
        cached = s.scalars(select(SyncCursor).where(SyncCursor.stream == "targets")).one()
        assert cached.object == "Account"
        cached.watermark_id = "0" * 64
    _touch(factory, changed[:10], 79)
    assert push(config) == 1 + 1
    assert checked == ["Account"] * 3


def test_missing_target_fields_refuse_the_push_with_one_message(
    database_url: str, factory: sessionmaker[Session], changed: list[int]
) -> None:
    def missing(_w: FakeWriter, _specs: Sequence[FieldSpec]) -> str:
        return "the push needs 1 target field(s): Account.Health_Score__c is missing"

    writer = crm_with(250)
    with pytest.raises(MissingTargetsError, match="Health_Score__c"):
        run_push(
            settings(database_url),
            "salesforce",
            writer_factory=lambda _s, _c: writer,
            targets=missing,  # type: ignore[arg-type]
        )
    assert writer.calls == 0
    assert writer.writes == []
    with factory() as s:
        # The run that planned the writes is closed failed with the message; nothing written.
        (run,) = s.scalars(select(SyncRun)).all()
        assert run.status == RunStatus.FAILED
        assert "Health_Score__c" in (run.error or "")
        assert s.scalar(select(func.count()).select_from(PushLedgerEntry)) == 0
        assert s.scalar(select(func.count()).select_from(SyncCursor)) == 0  # nothing cached


def test_unknown_objects_and_unconfigured_crms_are_config_errors(database_url: str) -> None:
    with pytest.raises(ConfigError, match="unknown salesforce object"):
        run_push(settings(database_url), "salesforce", ["Nope"], dry_run=True)
    with pytest.raises(ConfigError, match="hubspot is not configured"):
        run_push(settings(database_url), "hubspot", dry_run=True)


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    with api_client(create_app(settings(database_url)), role="viewer") as c:
        yield c


def test_preview_endpoint(api: TestClient, changed: list[int]) -> None:
    answer = api.get("/api/v1/push/preview", params={"crm": "salesforce", "limit": 1})
    assert answer.status_code == 200
    body = answer.json()
    assert body["planned_calls"] == 2 + 2  # the updates, and the target check (never cached)
    assert body["check_calls"] == 2
    account = next(o for o in body["objects"] if o["object"] == "Account")
    assert account["planned_records"] == 250
    assert len(account["records"]) == 1
    change = next(c for c in account["records"][0]["changes"] if c["field"] == "Health_Score__c")
    assert change["old"] is None
    assert change["reason"] == "never_pushed"


def test_preview_endpoint_pages_the_records_and_counts_the_whole_push(
    api: TestClient, changed: list[int]
) -> None:
    """``limit`` / ``offset`` page the listed records; the counts and ``planned_calls`` on every
    page are the whole push's; the pages together are the full list, in order, once."""
    whole = api.get("/api/v1/push/preview", params={"crm": "salesforce", "limit": 10_000}).json()
    full = next(o for o in whole["objects"] if o["object"] == "Account")
    assert full["truncated"] is False
    listed: list[int] = []
    offset = 0
    while True:
        body = api.get(
            "/api/v1/push/preview", params={"crm": "salesforce", "limit": 100, "offset": offset}
        ).json()
        assert body["planned_calls"] == whole["planned_calls"]
        account = next(o for o in body["objects"] if o["object"] == "Account")
        assert account["planned_records"] == full["planned_records"] == 250
        assert account["offset"] == offset
        listed += [r["row_id"] for r in account["records"]]
        if not account["truncated"]:
            break
        offset += 100
    assert offset == 200
    assert listed == [r["row_id"] for r in full["records"]]
    past = api.get("/api/v1/push/preview", params={"crm": "salesforce", "offset": 5_000}).json()
    assert past["planned_calls"] == whole["planned_calls"]
    assert all(o["records"] == [] and not o["truncated"] for o in past["objects"])
    bad = api.get("/api/v1/push/preview", params={"crm": "salesforce", "offset": -1})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "offset"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"crm": "pipedrive"}, "crm"),
        ({}, "crm"),
        ({"crm": "hubspot"}, "crm"),
        ({"crm": "salesforce", "object": "Nope"}, "object"),
    ],
)
def test_preview_endpoint_names_the_bad_parameter(
    api: TestClient, params: dict[str, str], field: str
) -> None:
    answer = api.get("/api/v1/push/preview", params=params)
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert detail["loc"] == ["query", field]


def test_cli_dry_run_prints_json_and_bad_crm_exits_2(
    database_url: str, changed: list[int], tmp_path: Path
) -> None:
    env = clean_env(
        database_url=database_url,
        salesforce_instance_url="https://sf.invalid",
        salesforce_access_token="token",
    )
    done = run_crmsync("push", "--crm", "salesforce", "--dry-run", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    import json

    summary = json.loads(done.stdout)
    assert summary["dry_run"] is True
    assert summary["planned_calls"] == 2 + 2
    bad = run_crmsync("push", "--crm", "nope", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "expected salesforce or hubspot" in bad.stderr
    unknown = run_crmsync("push", "--crm", "salesforce", "--object", "Nope", env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown salesforce object" in unknown.stderr


def _cs_account_with_note(
    factory: sessionmaker[Session], *, sf_id: str | None = None
) -> tuple[int, int]:
    """An account made on the CS side (no CRM id unless ``sf_id``) and a note written on it
    through the API's path: its parent-id columns copied from the account as it was then."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    with factory() as s, s.begin():
        account = Account(name="Made in CS", sf_id=sf_id, health_score=50)
        stamp_cs_change(account, ["health_score"], now)
        s.add(account)
        s.flush()
        note = HandoverNote(
            crmsync_id=str(uuid.uuid4()),
            account_id=account.id,
            sf_parent_id=account.sf_id,
            hs_company_id=account.hs_id,
            title="Kickoff",
            body="Handover: Kickoff\n\nThey want SSO.",
            origin="cs",
            created_at=now,
            updated_at=now,
        )
        s.add(note)
        stamp_cs_change(note, ["title", "body"], now)
        s.flush()
        return account.id, note.id


def test_a_note_waiting_for_its_parent_is_created_once_the_parent_has_its_id(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    account_id, note_id = _cs_account_with_note(factory)
    writer = FakeWriter()
    config = settings(database_url)

    def push(objects: list[str]) -> list[RunResult]:
        return run_push(
            config,
            "salesforce",
            objects,
            writer_factory=lambda _s, _c: writer,
            targets=no_missing([]),  # type: ignore[arg-type]
        ).results

    (waiting,) = push(["Note"])
    assert waiting.counts.skipped == 1  # the account has no Salesforce id yet
    assert writer.writes == []
    (account_run,) = push(["Account"])
    assert account_run.counts.created == 1
    with factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        assert account.sf_id is not None
        parent = account.sf_id
    (note_run,) = push(["Note"])  # the next push: the note goes, on its parent
    assert note_run.counts.created == 1
    (note_op,) = writer.writes[-1]
    assert note_op.fields["ParentId"] == parent
    with factory() as s:
        note = s.get(HandoverNote, note_id)
        assert note is not None
        assert note.sf_id is not None
    assert [r.counts.api_calls for r in push(["Note"])] == [0]


def test_an_account_and_its_note_made_in_cs_go_out_in_one_push(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    _account_id, note_id = _cs_account_with_note(factory)
    writer = FakeWriter()
    outcome = run_push(
        settings(database_url),
        "salesforce",
        writer_factory=lambda _s, _c: writer,
        targets=no_missing([]),  # type: ignore[arg-type]
    )
    created = {r.object_name: r.counts.created for r in outcome.results}
    assert created == {"Account": 1, "Note": 1}  # parents first, then the note on its new id
    with factory() as s:
        note = s.get(HandoverNote, note_id)
        assert note is not None
        assert note.sf_id is not None


def test_a_cs_note_already_in_salesforce_reaches_hubspot_once_its_company_has_an_id(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    account_id, note_id = _cs_account_with_note(factory, sf_id="001000000000000AAA")
    config = settings(database_url).model_copy(
        update={
            "hubspot_base_url": "https://hs.invalid",
            "hubspot_access_token": SecretStr("token"),
        }
    )
    sf = FakeWriter()
    sf.records["001000000000000AAA"] = {}
    (sf_note,) = run_push(
        config,
        "salesforce",
        ["Note"],
        writer_factory=lambda _s, _c: sf,
        targets=no_missing([]),  # type: ignore[arg-type]
    ).results
    assert sf_note.counts.created == 1
    hs = FakeWriter(name="hubspot")

    def hubspot() -> RunResult:
        (result,) = run_push(
            config,
            "hubspot",
            ["notes"],
            writer_factory=lambda _s, _c: hs,
            targets=no_missing([]),  # type: ignore[arg-type]
        ).results
        return result

    assert hubspot().counts.skipped == 1  # no HubSpot company yet
    with factory() as s, s.begin():
        account = s.get(Account, account_id)
        assert account is not None
        account.hs_id = "9001"  # the company arrives (a pull, or a push of the account)
    assert hubspot().counts.created == 1
    (note_op,) = hs.writes[-1]
    assert [(a.to_object, a.to_id) for a in note_op.associations] == [("companies", "9001")]
    with factory() as s:
        note = s.get(HandoverNote, note_id)
        assert note is not None
        assert note.sf_id is not None
        assert note.hs_id is not None
