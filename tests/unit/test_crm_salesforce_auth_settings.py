"""The token request of each Salesforce flow, built without a network: the form and the JWT."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from app.crm.salesforce.auth import JWT_GRANT, SalesforceToken, token_form
from app.errors import ConfigError
from app.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_jwt_assertion_claims_match_what_salesforce_checks(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = Settings(
        salesforce_client_id="3MVG9-key",
        salesforce_username="crmsync@acme.com",
        salesforce_private_key_file=key_file,
        salesforce_login_url="https://acme--uat.sandbox.my.salesforce.com",
    )
    form = token_form(settings, "jwt", NOW)
    assert form["grant_type"] == JWT_GRANT
    claims = jwt.decode(
        form["assertion"],
        key.public_key(),
        algorithms=["RS256"],
        audience="https://test.salesforce.com",
        options={"verify_exp": False},
    )
    assert claims == {
        "iss": "3MVG9-key",
        "sub": "crmsync@acme.com",
        "aud": "https://test.salesforce.com",
        "exp": int(NOW.timestamp()) + 180,
    }
    assert jwt.get_unverified_header(form["assertion"])["alg"] == "RS256"


def test_refresh_form_sends_the_secret_only_when_set() -> None:
    base = {
        "salesforce_client_id": "cid",
        "salesforce_refresh_token": SecretStr("5Aep-r"),
    }
    waived = token_form(Settings(**base), "refresh_token", NOW)
    assert waived == {"grant_type": "refresh_token", "client_id": "cid", "refresh_token": "5Aep-r"}
    full = token_form(
        Settings(**base, salesforce_client_secret=SecretStr("s")), "refresh_token", NOW
    )
    assert full["client_secret"] == "s"


def test_a_file_that_is_no_key_is_a_config_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    settings = Settings(
        salesforce_client_id="cid", salesforce_username="u", salesforce_private_key_file=bad
    )
    with pytest.raises(ConfigError, match="CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE"):
        token_form(settings, "jwt", NOW)


def test_token_never_in_repr() -> None:
    assert "00D!s3cr3t" not in repr(SalesforceToken("00D!s3cr3t", "https://acme.my.salesforce.com"))
