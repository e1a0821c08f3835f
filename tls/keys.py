"""ECDSA P-256 key generation, PEM encoding and loading."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import PKIError


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    """PEM PKCS#8. Services' keys are unencrypted on purpose (they load unattended; file mode 0600 protects them);
    the offline root's is encrypted with `passphrase`."""
    encryption = (serialization.NoEncryption() if passphrase is None
                  else serialization.BestAvailableEncryption(passphrase))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_private_key(path: Path | str, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"Private key file {path} does not exist.") from None
    except OSError as exc:
        raise PKIError(f"Private key file {path} cannot be read ({exc.strerror}).") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        needed = "is encrypted; give its passphrase" if passphrase is None else "is not encrypted"
        raise PKIError(f"Private key file {path} {needed}.") from None
    except ValueError:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise PKIError(f"Private key file {path} does not open with the passphrase given.") from None
        raise PKIError(f"Private key file {path} does not hold a PEM private key.") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"Private key file {path} holds a non-ECDSA key; this PKI uses ECDSA P-256 only.")
    return key
