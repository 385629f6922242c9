"""``crmsync sandbox`` as a process: starts on a free port, writes its files, answers, stops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import typer
from typer.testing import CliRunner

from app.cli.sandbox import build_config, sandbox

REPO = Path(__file__).resolve().parents[2]
RUN = "import typer; from app.cli.sandbox import sandbox; typer.run(sandbox)"


def test_cli_process_serves_until_terminated(tmp_path: Path) -> None:
    info_file = tmp_path / "sandbox.json"
    env_file = tmp_path / "sandbox.env"
    args = [
        sys.executable, "-c", RUN, "--port", "0", "--accounts", "5", "--seed", "3",
        "--info-file", str(info_file), "--env-file", str(env_file),
        "--fault", "GET /crm/v3/objects/*:unavailable=1",
        "--hubspot-webhook-url", "http://127.0.0.1:9/hooks",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not info_file.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no info file within 30 s"
            time.sleep(0.05)
        info = json.loads(info_file.read_text())
        # One server: the Salesforce login host is HubSpot's; the org's instance is its other
        # name (My Domain style).
        assert info["salesforce"]["login_url"] == info["hubspot"]["base_url"]
        assert info["salesforce"]["instance_url"] == info["salesforce"]["login_url"].replace(
            "127.0.0.1", "localhost"
        )
        assert "CRMSYNC_CA_BUNDLE=" + info["ca_file"] in env_file.read_text()
        with requests.Session() as s:
            s.trust_env = False
            s.verify = info["ca_file"]
            stats = s.get(info["control_url"] + "/stats", timeout=10)
            assert stats.status_code == 200
            assert stats.json()["calls_total"] == {}
            hooks = s.get(info["control_url"] + "/webhooks", timeout=10).json()
            assert hooks["hubspot_url"] == "http://127.0.0.1:9/hooks"
            token = info["hubspot"]["access_token"]
            faulted = s.get(
                info["hubspot"]["base_url"] + "/crm/v3/objects/companies",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert faulted.status_code == 503  # the --fault rule
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["salesforce_instance_url"] == info["salesforce"]["instance_url"]
    assert lines["salesforce_login_url"] == info["salesforce"]["login_url"]
    assert lines["salesforce_private_key_file"] == info["salesforce"]["jwt_private_key_file"]
    assert lines["hubspot_refresh_token"] == info["hubspot"]["refresh_token"]
    assert lines["hubspot_base_url"] == info["hubspot"]["base_url"]
    assert lines["ca_file"] == info["ca_file"]
    assert lines["salesforce_access_token"] == info["salesforce"]["access_token"]
    assert lines["hubspot_access_token"] == info["hubspot"]["access_token"]


def test_command_registers_on_a_typer_app() -> None:
    cli = typer.Typer()
    cli.command("sandbox")(sandbox)
    cli.command("other")(lambda: None)
    result = CliRunner().invoke(cli, ["sandbox", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in ("--port", "--seed", "--accounts", "--state-dir", "--info-file", "--env-file",
                   "--fault", "--custom-field", "--no-rate-limits", "--hubspot-webhook-url",
                   "--salesforce-webhook-url", "--host"):  # fmt: skip
        assert option in result.output


def test_flags_map_onto_the_config() -> None:
    config = build_config(
        host="127.0.0.1",
        port=0,
        seed=9,
        accounts=12,
        state_dir=None,
        hubspot_webhook_url=None,
        salesforce_webhook_url="http://127.0.0.1:1/sf",
        no_rate_limits=True,
        faults=["GET /crm/*:rate_limit=0.1"],
        custom_fields=["Account.Foo__c:double", "companies.foo_score:number"],
    )
    assert (config.seed, config.accounts, config.hs_rate_limits) == (9, 12, False)
    assert config.sf_custom_fields == {"Account": {"Foo__c": "double"}}
    assert config.hs_custom_properties == {"companies": {"foo_score": "number"}}
    assert config.webhook_url_salesforce == "http://127.0.0.1:1/sf"
    assert config.faults == ["GET /crm/*:rate_limit=0.1"]
    with pytest.raises(typer.BadParameter):
        build_config(
            host="127.0.0.1", port=0, seed=1, accounts=1, state_dir=None,
            hubspot_webhook_url=None, salesforce_webhook_url=None, no_rate_limits=False,
            faults=["GET /crm/*:rate_limit=7"], custom_fields=[],
        )  # fmt: skip
