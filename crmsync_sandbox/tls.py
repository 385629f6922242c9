"""The sandbox's test certificate authority and server certificate (trustme).

Clients trust the sandbox by its CA file only (``ca.pem``), never by disabling verification:
crmsync's adapters and the tests exercise the same TLS path as against the real CRMs. A new CA
is made on every start; with a state dir the files are rewritten in place, so a path configured
in crmsync stays valid across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["TlsFiles", "make_tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # give this to clients (REQUESTS session verify=, ssl_ca_cert=)
    cert_file: Path  # server certificate chain (leaf first)
    key_file: Path  # server private key


def make_tls_files(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> TlsFiles:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="crmsync sandbox", organization_unit_name="test CA")
    leaf = ca.issue_cert(*hosts)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key_file))
    files.key_file.chmod(0o600)
    return files
