"""Building, loading, describing and verifying X.509 certificates."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import PKIError
from .keys import generate_key
from .policy import (
    CLIENT_DAYS,
    ISSUING_DAYS,
    MAX_CA_DAYS,
    MAX_LEAF_DAYS,
    ROOT_DAYS,
    SERVER_DAYS,
    check_ca_name,
    check_days,
    check_dns_name,
    check_host,
    check_ip,
    check_role,
    is_ip,
)

# Backdate by a few minutes so hosts whose clocks lag slightly still accept a fresh certificate.
CLOCK_SKEW = timedelta(minutes=5)
LOCAL_DNS_NAMES = ("localhost",)
LOCAL_IP_ADDRESSES = ("127.0.0.1",)

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _start(not_valid_before: datetime | None) -> datetime:
    if not_valid_before is None:
        return _now() - CLOCK_SKEW
    if not isinstance(not_valid_before, datetime):
        raise PKIError(f"not_valid_before {not_valid_before!r} is not a datetime.")
    # Naive datetimes are taken as UTC, the same convention cryptography uses.
    if not_valid_before.tzinfo is None:
        return not_valid_before.replace(tzinfo=timezone.utc)
    return not_valid_before.astimezone(timezone.utc)


def server_alt_names(host: str) -> tuple[list[str], list[str]]:
    """(dns_names, ip_addresses) for the broker: its host plus the loopback names used by local tools."""
    host = check_host(host)
    dns = [] if is_ip(host) else [host]
    ips = [host] if is_ip(host) else []
    dns += [n for n in LOCAL_DNS_NAMES if n.lower() not in {d.lower() for d in dns}]
    ips += [i for i in LOCAL_IP_ADDRESSES if i not in ips]
    return dns, ips


def create_root_ca(common_name: str, valid_days: int = ROOT_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The self-signed trust anchor. path_length=1: it signs issuing CAs, which sign leaves only."""
    check_ca_name(common_name)
    check_days(valid_days, MAX_CA_DAYS)
    key = generate_key()
    start = _start(None)
    builder = _ca_builder(key, _name(common_name), start, start + timedelta(days=valid_days), path_length=1)
    return key, builder.issuer_name(_name(common_name)).sign(key, hashes.SHA256())


def create_issuing_ca(
    root_key: ec.EllipticCurvePrivateKey,
    root_cert: x509.Certificate,
    common_name: str,
    dns_names: list[str],
    ip_addresses: list[str],
    valid_days: int = ISSUING_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA that signs the broker's and clients' certificates, signed by the root. path_length=0: it cannot make
    another CA. Its name constraints permit only the broker's names (`dns_names`, `ip_addresses`), so a stolen
    issuing key cannot mint a certificate that clients accept for any other server."""
    _check_ca(root_key, root_cert)
    check_ca_name(common_name)
    check_days(valid_days, MAX_CA_DAYS)
    if not dns_names and not ip_addresses:
        raise PKIError("An issuing CA needs at least one permitted DNS name or IP address.")
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(check_dns_name(n)) for n in dns_names]
        + [x509.IPAddress(ipaddress.ip_network(check_ip(i))) for i in ip_addresses],
        excluded_subtrees=None,
    )
    key = generate_key()
    start = _start(None)
    end = min(start + timedelta(days=valid_days), root_cert.not_valid_after_utc)
    builder = (
        _ca_builder(key, _name(common_name), start, end, path_length=0)
        .issuer_name(root_cert.subject)
        # Critical, as RFC 5280 requires: a verifier that cannot enforce the constraints must refuse the chain.
        .add_extension(constraints, critical=True)
        .add_extension(_authority_key_id(root_cert), critical=False)
    )
    return key, builder.sign(root_key, hashes.SHA256())


def _ca_builder(key: ec.EllipticCurvePrivateKey, subject: x509.Name, start: datetime, end: datetime,
                path_length: int) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def public_key_der(key) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def ca_public_key(ca_cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    """The CA's public key; the project's CA is ECDSA, so anything else is a CA this tooling did not make."""
    key = ca_cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PKIError(f"The CA certificate {_common_name(ca_cert.subject)!r} does not hold an ECDSA key.")
    return key


def _check_ca(ca_key: object, ca_cert: object) -> None:
    if not isinstance(ca_cert, x509.Certificate) or not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise PKIError("The CA must be given as an ECDSA private key and its x509 certificate.")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        can_sign = ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        is_ca = can_sign = False
    if not (is_ca and can_sign):
        raise PKIError(f"Certificate {_common_name(ca_cert.subject)!r} is not a CA and cannot sign certificates.")
    if public_key_der(ca_key.public_key()) != public_key_der(ca_cert.public_key()):
        raise PKIError("The CA private key does not match the CA certificate.")


def _issue_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    eku: x509.ObjectIdentifier,
    valid_days: int,
    not_valid_before: datetime | None,
    san: x509.SubjectAlternativeName | None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    _check_ca(ca_key, ca_cert)
    check_days(valid_days, MAX_LEAF_DAYS)
    start = _start(not_valid_before)
    # A leaf cannot outlive its issuer: it would fail verification anyway once the CA expires.
    end = min(start + timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    if end <= start:
        raise PKIError("The CA expires before the requested start date; create a new CA first.")
    key = generate_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    dns_names: list[str],
    ip_addresses: list[str],
    valid_days: int = SERVER_DAYS,
    not_valid_before: datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Server certificate; use server_alt_names(host) for the project's standard SAN list."""
    check_host(common_name)
    dns = [check_dns_name(n) for n in dns_names]
    ips = [check_ip(i) for i in ip_addresses]
    if not dns and not ips:
        raise PKIError("A server certificate needs at least one DNS name or IP address.")
    _check_permitted(ca_cert, dns, ips)
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    )
    return _issue_leaf(
        ca_key, ca_cert, common_name, ExtendedKeyUsageOID.SERVER_AUTH, valid_days, not_valid_before, san
    )


def _check_permitted(ca_cert: x509.Certificate, dns_names: list[str], ip_addresses: list[str]) -> None:
    """Refuse names outside the issuer's name constraints: every verifier would refuse the certificate anyway."""
    constraints = _extension(ca_cert, x509.NameConstraints)
    if constraints is None or constraints.permitted_subtrees is None:
        return
    permitted = constraints.permitted_subtrees
    dns = [str(n.value).lower() for n in permitted if isinstance(n, x509.DNSName)]
    networks = [n.value for n in permitted
                if isinstance(n, x509.IPAddress) and isinstance(n.value, (ipaddress.IPv4Network, ipaddress.IPv6Network))]
    outside = [n for n in dns_names if not any(n.lower() == d or n.lower().endswith("." + d) for d in dns)]
    outside += [i for i in ip_addresses if not any(ipaddress.ip_address(i) in net for net in networks)]
    if outside:
        allowed = ", ".join([*dns, *(str(net) for net in networks)])
        raise PKIError(f"{', '.join(outside)} is outside what CA {_common_name(ca_cert.subject)!r} may certify "
                       f"({allowed}); a new broker host needs a new PKI (`python -m tls init`).")


def issue_client_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    valid_days: int = CLIENT_DAYS,
    not_valid_before: datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Client certificate whose CN is the role name (RabbitMQ can map it to a user)."""
    check_role(common_name)
    return _issue_leaf(
        ca_key, ca_cert, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, valid_days, not_valid_before, None
    )


def load_certificate(path: Path | str) -> x509.Certificate:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"Certificate file {path} does not exist.") from None
    except OSError as exc:
        raise PKIError(f"Certificate file {path} cannot be read ({exc.strerror}).") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PKIError(f"Certificate file {path} does not hold a PEM certificate.") from None


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


Extension = TypeVar("Extension", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, cls: type[Extension]) -> Extension | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]


def eku_names(cert: x509.Certificate) -> list[str]:
    eku = _extension(cert, x509.ExtendedKeyUsage)
    return [_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku] if eku is not None else []


def describe_certificate(cert: x509.Certificate) -> dict:
    dns, ips = alt_names(cert)
    constraints = _extension(cert, x509.BasicConstraints)
    left = cert.not_valid_after_utc - _now()
    return {
        "subject_cn": _common_name(cert.subject),
        "issuer_cn": _common_name(cert.issuer),
        "dns_names": dns,
        "ip_addresses": ips,
        "sans": dns + ips,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": left.days,  # floors, so anything past expiry is negative
        "expired": left.total_seconds() <= 0,
        "serial": format(cert.serial_number, "x"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "is_ca": bool(constraints and constraints.ca),
        "eku": eku_names(cert),
    }


def describe(cert_path: Path | str) -> dict:
    """Summary of the certificate at `cert_path` (never touches the key)."""
    return {"path": str(cert_path), **describe_certificate(load_certificate(cert_path))}


def verify_chain(ca_cert: x509.Certificate, cert: x509.Certificate, at: datetime | None = None) -> None:
    """Raise PKIError unless `cert` is signed by `ca_cert` and both are valid at `at` (default: now)."""
    at = _start(at) if at is not None else _now()
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(
            f"Certificate {_common_name(cert.subject)!r} was not issued by CA {_common_name(ca_cert.subject)!r}."
        ) from None
    for c, what in ((ca_cert, "CA certificate"), (cert, "Certificate")):
        cn = _common_name(c.subject)
        if at < c.not_valid_before_utc:
            raise PKIError(f"{what} {cn!r} is not valid until {c.not_valid_before_utc.isoformat()}.")
        if at >= c.not_valid_after_utc:
            raise PKIError(f"{what} {cn!r} expired on {c.not_valid_after_utc.isoformat()}.")
