"""Network failures below HTTP, recognised once for both adapters' classification tables.

``requests`` and ``urllib3`` wrap the real cause several layers deep (``ConnectionError`` ->
``MaxRetryError`` -> ``NewConnectionError``; ``SSLError`` -> ... -> ``SSLCertVerificationError``).
These helpers walk that chain so the tables can say *TLS* or *unreachable* instead of a class
name, and quote the certificate error a user can act on.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import urllib3.exceptions


def causes(failure: BaseException) -> Iterator[BaseException]:
    """``failure`` and all it wraps (``args``, ``reason``, ``__cause__``, ``__context__``)."""
    seen: set[int] = set()
    pending: list[BaseException] = [failure]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [getattr(current, "reason", None), current.__cause__, current.__context__]
        linked.extend(current.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))


def is_connection_drop(failure: BaseException) -> bool:
    """The peer closed a TLS connection without a goodbye (``SSLEOFError``): a reset in the
    middle of a request, as a load balancer or a crashing server does it. Not a certificate or
    handshake problem: the request may be repeated like any other reset."""
    return any(isinstance(item, ssl.SSLEOFError) for item in causes(failure))


def is_tls_failure(failure: BaseException) -> bool:
    """A certificate that did not verify, or a TLS handshake that failed (not a dropped
    connection: :func:`is_connection_drop`)."""
    if is_connection_drop(failure):
        return False
    return any(
        isinstance(item, ssl.SSLError | urllib3.exceptions.SSLError) for item in causes(failure)
    )


def is_connect_failure(failure: BaseException) -> bool:
    """No connection was made: refused, unknown host, no route, connect timeout."""
    return any(
        isinstance(item, urllib3.exceptions.ConnectTimeoutError | ConnectionRefusedError)
        for item in causes(failure)
    )


def tls_reason(failure: BaseException) -> str:
    """The certificate error in words (``unable to get local issuer certificate``), if known."""
    for item in causes(failure):
        if isinstance(item, ssl.SSLCertVerificationError) and item.verify_message:
            return f"certificate verify failed: {item.verify_message}"
    for item in causes(failure):
        if isinstance(item, ssl.SSLError) and item.reason:
            return f"TLS error: {item.reason}"
    return "TLS handshake failed"
