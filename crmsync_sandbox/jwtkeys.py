"""The key pair of the sandbox's connected app for the JWT bearer flow (crm-api.md A.3.1).

A real org checks a JWT against the certificate uploaded to the connected app; the sandbox does
the same against ``SandboxConfig.sf_jwt_certificate``. When none is configured it makes an RSA
key pair and a self-signed certificate under its own directory (``<state dir>/oauth``, or the
temporary dir of an in-memory sandbox), never in the user's files, and prints the private key's
path so a client can sign with it. With a state dir the pair is kept across restarts, so a
configured ``CRMSYNC_SALESFORCE_PRIVATE_KEY_FILE`` stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

__all__ = ["JwtKeys", "load_public_key", "make_jwt_keys"]


@dataclass(frozen=True)
class JwtKeys:
    private_key_file: Path  # the client signs its assertion with this (PEM, PKCS#8)
    certificate_file: Path  # what "was uploaded to the connected app" (PEM)


def make_jwt_keys(directory: Path) -> JwtKeys:
    """``jwt-private-key.pem`` and ``jwt-certificate.pem`` in ``directory`` (kept if present)."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = JwtKeys(directory / "jwt-private-key.pem", directory / "jwt-certificate.pem")
    if keys.private_key_file.is_file() and keys.certificate_file.is_file():
        return keys
    private_pem, certificate_pem = _new_pair()
    keys.private_key_file.write_bytes(private_pem)
    keys.private_key_file.chmod(0o600)
    keys.certificate_file.write_bytes(certificate_pem)
    return keys


@lru_cache(maxsize=1)
def _new_pair() -> tuple[bytes, bytes]:
    """One RSA pair per process (PEM key, PEM certificate): making one costs ~0.1 s, and a test
    run starts hundreds of in-memory sandboxes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmsync sandbox connected app")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, cert.public_bytes(serialization.Encoding.PEM)


def load_public_key(path: Path) -> PublicKeyTypes:
    """The public key of a PEM certificate or PEM public key file."""
    data = path.read_bytes()
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return serialization.load_pem_public_key(data)
