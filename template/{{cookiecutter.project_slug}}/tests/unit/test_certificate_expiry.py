"""The healthcheck's certificate expiry, read from DER by hand, agrees with cryptography's reading."""
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from {{ cookiecutter.package_name }}.certificate_expiry import WARN_DAYS, expiry_report, not_after
from {{ cookiecutter.package_name }}.healthcheck import main as healthcheck

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def certificate(not_after_: datetime, common_name: str = "billing-worker") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(not_after_).sign(key, hashes.SHA256()))


@pytest.mark.parametrize("expires", [
    NOW + timedelta(days=365, seconds=7),       # UTCTime
    datetime(2051, 3, 4, 5, 6, 7, tzinfo=timezone.utc),    # GeneralizedTime (2050 on)
    NOW - timedelta(hours=1),                    # already expired
])
def test_not_after_reads_what_cryptography_wrote(expires):
    cert = certificate(expires, common_name="x" * 64)       # a long name: multi-byte DER lengths
    assert not_after(cert.public_bytes(Encoding.PEM).decode()) == cert.not_valid_after_utc == expires


def test_a_file_with_its_chain_reports_its_own_certificate():
    """Each client's .crt carries the issuing CA after its own certificate: the first is the one that expires."""
    leaf, issuer = certificate(NOW + timedelta(days=30)), certificate(NOW + timedelta(days=700), "Issuing CA")
    assert not_after((leaf.public_bytes(Encoding.PEM) + issuer.public_bytes(Encoding.PEM)).decode()) == \
        leaf.not_valid_after_utc


def test_the_report_gives_days_left_and_warns_before_expiry(tmp_path):
    path = tmp_path / "client.crt"
    path.write_bytes(certificate(NOW + timedelta(days=200)).public_bytes(Encoding.PEM))
    assert expiry_report(path, NOW) == (True, "client certificate expires 2027-06-20 (200 days left)")
    path.write_bytes(certificate(NOW + timedelta(days=WARN_DAYS - 1)).public_bytes(Encoding.PEM))
    valid, line = expiry_report(path, NOW)
    assert valid and line.endswith("days left); rotate it now: python -m tls rotate <identity>")
    path.write_bytes(certificate(NOW - timedelta(seconds=1)).public_bytes(Encoding.PEM))
    assert expiry_report(path, NOW) == (False, "client certificate expired on 2026-12-02")
    path.write_text("not a certificate")
    assert expiry_report(path, NOW)[0] is False


def test_the_healthcheck_reports_the_certificate_and_fails_once_it_expired(tmp_path, monkeypatch, capsys):
    import {{ cookiecutter.package_name }}.healthcheck as module
    alive = tmp_path / "alive"
    alive.write_text("1\n")
    cert = tmp_path / "client.crt"
    monkeypatch.setattr(module, "LIVENESS_FILE", alive)
    monkeypatch.setenv("TLS_CERT_FILE", str(cert))
    cert.write_bytes(certificate(datetime.now(timezone.utc) + timedelta(days=90)).public_bytes(Encoding.PEM))
    assert healthcheck() == 0
    assert "healthy: heartbeat" in (out := capsys.readouterr().out) and "days left" in out
    cert.write_bytes(certificate(datetime.now(timezone.utc) - timedelta(days=1)).public_bytes(Encoding.PEM))
    assert healthcheck() == 1
    assert capsys.readouterr().out.startswith("unhealthy: client certificate expired on ")
