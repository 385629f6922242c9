"""Secrets never reach a log line, whatever key or string carries them (app/logging.py)."""

from __future__ import annotations

import pytest

from app.logging import MASK, redact_secrets


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"access_token": "00Dabc!xyz"}, {"access_token": MASK}),
        ({"client_secret": "s3cret"}, {"client_secret": MASK}),
        ({"Authorization": "Bearer pat-na1-123"}, {"Authorization": MASK}),
        ({"api_key": None}, {"api_key": None}),
        ({"error": "401 for Bearer pat-na1-abc.def"}, {"error": f"401 for Bearer {MASK}"}),
        (
            {"url": "https://x.test/token?grant_type=refresh_token&refresh_token=5Aep&x=1"},
            {"url": f"https://x.test/token?grant_type=refresh_token&refresh_token={MASK}&x=1"},
        ),
        ({"detail": 'client_secret="abc123"'}, {"detail": f'client_secret="{MASK}"'}),
        (
            {"run_id": 7, "crm": "salesforce", "object": "Account"},
            {"run_id": 7, "crm": "salesforce", "object": "Account"},
        ),
        ({"event": "salesforce token issued"}, {"event": "salesforce token issued"}),
    ],
)
def test_redact_secrets(event: dict[str, object], expected: dict[str, object]) -> None:
    assert dict(redact_secrets(None, "info", dict(event))) == expected
