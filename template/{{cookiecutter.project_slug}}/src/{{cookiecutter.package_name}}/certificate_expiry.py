"""When this process's client certificate expires, for the healthcheck's output (the worker image carries no
X.509 library: the standard library turns PEM into DER, and the one field needed is read from the DER here)."""
import ssl
from datetime import datetime, timezone
from pathlib import Path

EXPLICIT_VERSION, UTC_TIME = 0xA0, 0x17
WARN_DAYS = 30      # as `python -m tls inspect`: time to rotate before the broker refuses the certificate


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at offset `at`."""
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(der[at:at + size], "big"), at + size
    return tag, at, at + length


def not_after(pem: str) -> datetime:
    """The end of validity of a PEM certificate, the first of the file when it carries its chain too (RFC 5280:
    Certificate > TBSCertificate > Validity > notAfter)."""
    der = ssl.PEM_cert_to_DER_cert(pem[:pem.index(ssl.PEM_FOOTER) + len(ssl.PEM_FOOTER)])
    tbs = _element(der, 0)[1]                    # Certificate: tbsCertificate comes first
    at = _element(der, tbs)[1]                   # tbsCertificate's first field
    tag, _, end = _element(der, at)
    if tag == EXPLICIT_VERSION:                  # [0] version (absent from v1 certificates)
        at = end
    for _ in range(3):                           # serialNumber, signature, issuer
        at = _element(der, at)[2]
    validity = _element(der, at)[1]
    tag, start, end = _element(der, _element(der, validity)[2])     # past notBefore: notAfter
    text = der[start:end].decode("ascii")
    return datetime.strptime(text, "%y%m%d%H%M%SZ" if tag == UTC_TIME else "%Y%m%d%H%M%SZ").replace(
        tzinfo=timezone.utc)


def expiry_report(path: Path, now: datetime | None = None) -> tuple[bool, str]:
    """(still valid, one line for the healthcheck): days left, with a warning once fewer than WARN_DAYS remain."""
    try:
        expires = not_after(path.read_text(encoding="ascii"))
    except (OSError, ValueError, IndexError) as exc:
        return False, f"client certificate {path} unreadable ({type(exc).__name__})"
    left = expires - (now or datetime.now(timezone.utc))
    if left.total_seconds() <= 0:
        return False, f"client certificate expired on {expires:%Y-%m-%d}"
    line = f"client certificate expires {expires:%Y-%m-%d} ({left.days} days left)"
    if left.days < WARN_DAYS:
        line += "; rotate it now: python -m tls rotate <identity>"
    return True, line
