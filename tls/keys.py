"""ECDSA P-256 key generation, PEM encoding and loading."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import PKIError


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted on purpose: services load keys unattended; file mode 0600 is the protection.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: Path | str) -> ec.EllipticCurvePrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"Private key file {path} does not exist.") from None
    except OSError as exc:
        raise PKIError(f"Private key file {path} cannot be read ({exc.strerror}).") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise PKIError(f"Private key file {path} does not hold an unencrypted PEM private key.") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"Private key file {path} holds a non-ECDSA key; this PKI uses ECDSA P-256 only.")
    return key
