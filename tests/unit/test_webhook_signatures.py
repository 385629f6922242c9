"""Webhook signatures against the vectors of crm-api.md B.10 (computed independently with
Python's hmac/hashlib and hubspot-api-client's own helper), and the refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hubspot.utils.signature import Signature

from app.webhooks.signatures import (
    SignatureError,
    decode_hubspot_uri,
    hubspot_v3_signature,
    salesforce_json_signature,
    verify_hubspot_v3,
    verify_salesforce_json,
)

SECRET = "6f2c1a8e-0b6d-4a57-9c3e-2d8f5b1e7a90"
BODY = (
    b'[{"eventId":1001,"subscriptionId":2001,"portalId":62515,"appId":3001,'
    b'"occurredAt":1704067200000,"subscriptionType":"deal.propertyChange","attemptNumber":0,'
    b'"objectId":512,"propertyName":"dealstage","propertyValue":"closedwon",'
    b'"changeSource":"CRM_UI"}]'
)
TS = "1704067260000"
URI = "https://crmsync.example.test/hooks/hubspot?source=hs"


def test_body_is_the_documented_250_bytes() -> None:
    assert len(BODY) == 250


@pytest.mark.parametrize(
    ("secret", "uri", "body", "ts", "expected"),
    [
        (SECRET, URI, BODY, TS, "sNmCzn2++ITegJ9jgxuD9pCcAecsp32OYLqrtik/sTY="),
        (
            "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
            "https://www.example.com/webhook_uri",
            b"{'example_field':'example_value'}",
            "1693657560000",
            "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
        ),
    ],
)
def test_v3_vectors(secret: str, uri: str, body: bytes, ts: str, expected: str) -> None:
    assert hubspot_v3_signature(secret, "POST", uri, body, ts) == expected
    # independently: the formula by hand (the library refuses timestamps this old; it is
    # checked on a fresh request below)
    by_hand = base64.b64encode(
        hmac.new(
            secret.encode(), b"POST" + uri.encode() + body + ts.encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert by_hand == expected


def test_v3_decodes_the_uri_before_hashing() -> None:
    called = "https://crmsync.example.test/hooks/hubspot?portal=62515&ts=2024-01-01T00%3A00%3A00Z"
    assert decode_hubspot_uri(called).endswith("ts=2024-01-01T00:00:00Z")
    verify_hubspot_v3(
        secret=SECRET,
        method="POST",
        uri=called,
        body=BODY,
        timestamp=TS,
        signature="prubm0vz/3sJLWYIBXDOqsIKSN7wu66Dhtc8TQPLKCs=",
        now_ms=int(TS) + 1000,
    )


def test_decoding_touches_only_the_listed_escapes() -> None:
    assert decode_hubspot_uri("/a%20b%3a%2F%40%25") == "/a%20b:/@%25"


def test_valid_v3_passes_within_five_minutes() -> None:
    signature = hubspot_v3_signature(SECRET, "POST", URI, BODY, TS)
    verify_hubspot_v3(
        secret=SECRET,
        method="POST",
        uri=URI,
        body=BODY,
        timestamp=TS,
        signature=signature,
        now_ms=int(TS) + 299_000,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"now_ms": int(TS) + 301_000}, "more than 5 minutes old"),
        ({"now_ms": int(TS) - 301_000}, "in the future"),
        ({"secret": "another-secret"}, "does not match"),
        ({"body": BODY + b" "}, "does not match"),
        ({"uri": URI + "&x=1"}, "does not match"),
        ({"method": "PUT"}, "does not match"),
        ({"timestamp": None}, "X-HubSpot-Request-Timestamp header missing"),
        ({"timestamp": "yesterday"}, "not a millisecond timestamp"),
        ({"signature": None}, "X-HubSpot-Signature-v3 header missing"),
    ],
)
def test_v3_refusals(change: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {
        "secret": SECRET,
        "method": "POST",
        "uri": URI,
        "body": BODY,
        "timestamp": TS,
        "signature": hubspot_v3_signature(SECRET, "POST", URI, BODY, TS),
        "now_ms": int(TS) + 1000,
    }
    args.update(change)
    with pytest.raises(SignatureError, match=reason):
        verify_hubspot_v3(**args)  # type: ignore[arg-type]


def test_hubspot_library_agrees_on_a_fresh_request() -> None:
    import time

    ts = str(int(time.time() * 1000))
    signature = hubspot_v3_signature(SECRET, "POST", URI, BODY, ts)
    assert Signature.is_valid(
        signature=signature,
        client_secret=SECRET,
        request_body=BODY.decode(),
        http_uri=URI,
        http_method="POST",
        signature_version="v3",
        timestamp=int(ts),
    )


def test_salesforce_json_signature() -> None:
    body = b'{"events":[{"id":"e1","recordId":"006000000000001AAA"}]}'
    ts = "1704067260000"
    expected = hmac.new(b"k3y", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert salesforce_json_signature("k3y", body, ts) == expected
    verify_salesforce_json(
        secret="k3y", body=body, timestamp=ts, signature="sha256=" + expected, now_ms=int(ts)
    )
    with pytest.raises(SignatureError, match="does not match"):
        verify_salesforce_json(
            secret="other", body=body, timestamp=ts, signature=expected, now_ms=int(ts)
        )
    with pytest.raises(SignatureError, match="5 minutes old"):
        verify_salesforce_json(
            secret="k3y", body=body, timestamp=ts, signature=expected, now_ms=int(ts) + 400_000
        )
