"""Webhook signatures (crm-api.md B.10), pure and constant-time.

HubSpot v3: ``base64(HMAC-SHA256(app secret, method + uri + body + timestamp))`` where ``uri``
is the full URL *as HubSpot called it* (behind a proxy: ``CRMSYNC_PUBLIC_BASE_URL`` + path +
query), with ``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B`` decoded first (and only those),
and ``X-HubSpot-Request-Timestamp`` in ms; a timestamp older than 5 minutes is refused (a replay),
and so is one more than 5 minutes ahead (a clock that far off is not HubSpot's).

Salesforce Flow / Apex callers (no native signature exists for Outbound Messages) sign a JSON
body with ``X-Crmsync-Signature = hex(HMAC-SHA256(secret, timestamp + "." + body))`` and
``X-Crmsync-Timestamp`` (ms), the same 5-minute window.

Every comparison is :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = [
    "MAX_SKEW_MS",
    "SignatureError",
    "check_timestamp",
    "decode_hubspot_uri",
    "hubspot_v3_signature",
    "salesforce_json_signature",
    "verify_hubspot_v3",
    "verify_salesforce_json",
]

#: The replay window: 5 minutes either way (crm-api.md B.10).
MAX_SKEW_MS = 5 * 60 * 1000

# The escapes HubSpot's validators decode before hashing, and only those (B.10).
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPE = re.compile("|".join(_DECODED), re.IGNORECASE)


class SignatureError(ValueError):
    """The request is not authentic: ``reason`` says why (the 401 body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_hubspot_uri(uri: str) -> str:
    """``uri`` with the twelve escapes HubSpot decodes replaced by their characters."""
    return _ESCAPE.sub(lambda m: _DECODED[m.group(0).upper()], uri)


def hubspot_v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The v3 signature of a request (``uri`` already decoded)."""
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def salesforce_json_signature(secret: str, body: bytes, timestamp: str) -> str:
    """``hex(HMAC-SHA256(secret, timestamp + "." + body))`` for Flow / Apex JSON callers."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_timestamp(timestamp: str | None, now_ms: int, header: str) -> None:
    """Refuse a missing, malformed, stale (> 5 min old) or far-future timestamp."""
    if not timestamp:
        raise SignatureError(f"{header} header missing")
    try:
        at = int(timestamp.strip())
    except ValueError:
        raise SignatureError(f"{header} is not a millisecond timestamp") from None
    if now_ms - at > MAX_SKEW_MS:
        raise SignatureError(f"{header} is more than 5 minutes old (a replay?)")
    if at - now_ms > MAX_SKEW_MS:
        raise SignatureError(f"{header} is more than 5 minutes in the future")


def verify_hubspot_v3(
    *,
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now_ms: int,
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is the v3 signature of the request,
    made within the last 5 minutes. ``uri`` is the URL as HubSpot called it (not yet decoded)."""
    if not signature:
        raise SignatureError("X-HubSpot-Signature-v3 header missing")
    check_timestamp(timestamp, now_ms, "X-HubSpot-Request-Timestamp")
    assert timestamp is not None
    expected = hubspot_v3_signature(secret, method, decode_hubspot_uri(uri), body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError("X-HubSpot-Signature-v3 does not match (wrong app secret or URL?)")


def verify_salesforce_json(
    *, secret: str, body: bytes, timestamp: str | None, signature: str | None, now_ms: int
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` signs ``timestamp`` and ``body``."""
    if not signature:
        raise SignatureError("X-Crmsync-Signature header missing")
    check_timestamp(timestamp, now_ms, "X-Crmsync-Timestamp")
    assert timestamp is not None
    expected = salesforce_json_signature(secret, body, timestamp.strip())
    given = signature.strip().removeprefix("sha256=").lower()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("X-Crmsync-Signature does not match (wrong secret?)")
