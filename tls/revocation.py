"""Certificate revocation: the CA's CRL, written where the broker looks for it.

The broker (Erlang's ssl_crl_hash_dir) finds the CRL of a certificate's issuer in one directory, under the issuer's
OpenSSL name hash: `crl/<hash>.r0`. The CRL is the only record of what is revoked: revoking adds to the entries of
the CRL on disk and signs a new one, so nothing else can disagree with what the broker enforces.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from .certificates import CLOCK_SKEW, ca_public_key
from .errors import PKIError

CRL_DIR = "crl"
CRL_DIR_MODE = 0o755     # a CRL is public: the broker's user reads it, nothing in it is secret
CRL_MODE = 0o644
# Tags of the DER the name hash is computed over (X.690).
_OBJECT_IDENTIFIER, _SEQUENCE, _SET, _UTF8STRING = 0x06, 0x30, 0x31, 0x0C
_SPACES = re.compile(r"[ \t\n\v\f\r]+")   # OpenSSL's white space is ASCII only


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _oid(oid: x509.ObjectIdentifier) -> bytes:
    first, second, *rest = (int(arc) for arc in oid.dotted_string.split("."))
    body = b""
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return _der(_OBJECT_IDENTIFIER, body)


def _canonical_value(value: str) -> bytes:
    # OpenSSL's canonical form: trimmed, ASCII lower-cased, inner runs of white space collapsed to one space.
    text = _SPACES.sub(" ", value).strip(" ")
    return "".join(c.lower() if c.isascii() else c for c in text).encode("utf-8")


def openssl_name_hash(name: x509.Name) -> str:
    """`openssl x509 -subject_hash` of a certificate with subject `name`: the first four bytes of the SHA-1 of the
    name's canonical DER (each value as a canonical UTF8String), read little-endian, as eight hex digits."""
    canonical = b""
    for rdn in name.rdns:
        attributes = sorted(
            _der(_SEQUENCE, _oid(attribute.oid) + _der(_UTF8STRING, _canonical_value(str(attribute.value))))
            for attribute in rdn
        )
        canonical += _der(_SET, b"".join(attributes))
    digest = hashlib.sha1(canonical, usedforsecurity=False).digest()
    return format(int.from_bytes(digest[:4], "little"), "08x")


def crl_path(pki_dir: Path, ca_cert: x509.Certificate) -> Path:
    return Path(pki_dir) / CRL_DIR / f"{openssl_name_hash(ca_cert.subject)}.r0"


def load_crl(pki_dir: Path, ca_cert: x509.Certificate) -> x509.CertificateRevocationList | None:
    """The CA's current CRL, or None if it has none yet; PKIError if the file is not a CRL signed by this CA."""
    path = crl_path(pki_dir, ca_cert)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise PKIError(f"{path} does not hold a PEM certificate revocation list.") from None
    if crl.issuer != ca_cert.subject or not _signed_by(crl, ca_cert):
        raise PKIError(f"{path} is not signed by this PKI's CA; `python -m tls crl` rebuilds it from archive/ "
                       "(revocations it alone recorded are lost).")
    return crl


def _signed_by(crl: x509.CertificateRevocationList, ca_cert: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(ca_public_key(ca_cert))
    except (InvalidSignature, TypeError):
        return False


def build_crl(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    revoked: list[x509.RevokedCertificate],
    number: int,
) -> x509.CertificateRevocationList:
    """A CRL listing `revoked`, valid until the CA expires. Its next update is not a freshness promise: the CRL
    reaches the broker from local disk, not a fetch that could serve a stale copy, and `revoke` re-signs it at
    once; a shorter next update would only lock every client out on the day nobody re-signed it."""
    now = datetime.now(timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(ca_cert.not_valid_after_utc)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key(ca_cert)), critical=False
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca_key, hashes.SHA256())


def revoked_entry(cert: x509.Certificate) -> x509.RevokedCertificate:
    return (
        x509.RevokedCertificateBuilder()
        .serial_number(cert.serial_number)
        .revocation_date(datetime.now(timezone.utc))
        .build()
    )


def crl_with(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    current: x509.CertificateRevocationList | None,
    certificates: list[x509.Certificate],
) -> x509.CertificateRevocationList:
    """`current` (or an empty CRL) plus `certificates`, signed anew with the next CRL number."""
    for cert in certificates:
        if cert.issuer != ca_cert.subject:
            raise PKIError(f"Certificate {cert.subject.rfc4514_string()!r} was not issued by this PKI's CA.")
    entries = list(current) if current is not None else []
    listed = {entry.serial_number for entry in entries}
    entries += [revoked_entry(cert) for cert in certificates if cert.serial_number not in listed]
    number = 1
    if current is not None:
        number = current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    return build_crl(ca_key, ca_cert, entries, number)


def is_revoked(crl: x509.CertificateRevocationList | None, cert: x509.Certificate) -> bool:
    return crl is not None and crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.PEM)

