"""A small certificate authority for trials and tests of the network mode (``secagg certs``).

Writes ``ca.pem``, ``coordinator.pem``/``coordinator.key`` (subject alternative names for the
given host names and IP addresses) and, per client, ``client-<id>.pem``/``client-<id>.key`` whose
common name ``client-<id>`` is how the coordinator knows which institution is which under mutual
TLS; and, for the malicious-server mode, each client's Ed25519 identity key
``identity-<id>.key`` (also a Paillier bank's signing key) with every public half in
``verify_keys.json``. Keys are ECDSA P-256 from ``cryptography``. In production, use your organisation's PKI:
the coordinator only needs a CA bundle and the certificate-to-id mapping (see docs/network.md).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Sequence
from pathlib import Path

from secagg.errors import ParameterError

__all__ = ["make_dev_pki", "client_common_name", "load_identity", "load_verify_keys"]


def client_common_name(client_id: int) -> str:
    return f"client-{client_id}"


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_dev_pki(directory: str | os.PathLike, num_clients: int, *, hosts: Sequence[str] = ("localhost",),
                 ips: Sequence[str] = ("127.0.0.1",), days: int = 30) -> Path:
    """Create a CA, a coordinator certificate and ``num_clients`` client certificates in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or not 1 <= num_clients <= 100_000:
        raise ParameterError(f"num_clients must be an int in 1..100000, got {num_clients!r}")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise ParameterError(f"days must be an int in 1..3650, got {days!r}")
    try:
        addresses = [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise ParameterError(f"bad IP address: {exc}") from None
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = now + datetime.timedelta(days=days)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secagg dev PKI"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("secagg dev CA")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    _write(out / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(out / "ca.key", pem_key(ca_key), private=True)

    def issue(common_name: str, usage, sans=None) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common_name)).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)

    sans = [x509.DNSName(h) for h in hosts] + [x509.IPAddress(a) for a in addresses]
    cert, key = issue("secagg coordinator", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    _write(out / "coordinator.pem", cert)
    _write(out / "coordinator.key", key, private=True)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    verify_keys = {}
    for client in range(num_clients):
        cert, key = issue(client_common_name(client), ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(out / f"{client_common_name(client)}.pem", cert)
        _write(out / f"{client_common_name(client)}.key", key, private=True)
        identity = Ed25519PrivateKey.generate()
        _write(out / f"identity-{client}.key", pem_key(identity), private=True)
        verify_keys[str(client)] = identity.public_key().public_bytes_raw().hex()
    _write(out / "verify_keys.json", json.dumps(verify_keys, indent=1).encode())
    return out


def load_identity(path: str | os.PathLike):
    """An Ed25519 identity key (PEM, PKCS#8) as a :class:`secagg.crypto.signatures.IdentityKey`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from secagg.crypto.signatures import IdentityKey

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ParameterError(f"cannot read the identity key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ParameterError(f"{path} is not an Ed25519 private key")
    return IdentityKey(key)


def load_verify_keys(path: str | os.PathLike) -> dict[int, bytes]:
    """``{client id: 32-byte Ed25519 public key}`` from a JSON object of hex strings."""
    try:
        raw = json.loads(Path(path).read_text())
        keys = {int(i): bytes.fromhex(k) for i, k in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ParameterError(f"cannot read verify keys from {path}: {exc}") from None
    if any(len(k) != 32 for k in keys.values()):
        raise ParameterError(f"{path}: every verify key must be 32 bytes (64 hex digits)")
    return keys
