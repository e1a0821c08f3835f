"""Unit tests for revocation: the CRL the broker reads, `revoke`, and `rotate` revoking what it replaces."""

from __future__ import annotations

import shutil
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tls import PKIError, bootstrap_pki, check_crl, load_certificate, openssl_name_hash, revoke, rotate
from tls.__main__ import main
from tls.revocation import crl_path, load_crl
from tls.pki_directory import cert_pem

OPENSSL = shutil.which("openssl")


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    pki_dir = tmp_path / "pki"
    bootstrap_pki(pki_dir, "rabbitmq", ["worker", "producer"], ca_common_name="Test CA")
    return pki_dir


def current_crl(pki: Path, ca: str = "issuing-ca") -> x509.CertificateRevocationList:
    crl = load_crl(pki, load_certificate(pki / f"{ca}.crt"))
    assert crl is not None
    return crl


def verify(pki: Path, leaf: Path, crl_dir: Path | None = None) -> subprocess.CompletedProcess:
    """OpenSSL's verdict on the chain in `leaf`'s file under pki's root, every CRL of `crl_dir` checked."""
    crls = [arg for path in sorted((crl_dir or pki / "crl").iterdir()) for arg in ("-CRLfile", str(path))]
    return openssl("verify", "-crl_check_all", "-CAfile", str(pki / "ca.crt"), "-untrusted", str(leaf), *crls,
                   str(leaf))


def serials(crl: x509.CertificateRevocationList) -> set[int]:
    return {entry.serial_number for entry in crl}


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def openssl(*args: str) -> subprocess.CompletedProcess:
    assert OPENSSL, "openssl is needed to cross-check the CRL with an independent implementation"
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False)


def self_signed(name: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))


@pytest.mark.parametrize("attributes", [
    [(NameOID.COMMON_NAME, "Celery PKI CA")],
    [(NameOID.COMMON_NAME, "  Mixed   CASE\tCA ")],       # canonical form: trimmed, lower case, spaces collapsed
    [(NameOID.COMMON_NAME, "Ünïcode CA")],
    [(NameOID.COUNTRY_NAME, "DE"), (NameOID.ORGANIZATION_NAME, "Example Org"), (NameOID.COMMON_NAME, "Issuing CA")],
])
def test_name_hash_is_the_one_openssl_and_erlang_look_up(tmp_path: Path, attributes):
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    (tmp_path / "ca.crt").write_bytes(cert_pem(self_signed(name)))
    result = openssl("x509", "-noout", "-subject_hash", "-in", str(tmp_path / "ca.crt"))
    assert result.returncode == 0, result.stderr
    assert openssl_name_hash(name) == result.stdout.strip()


@pytest.mark.parametrize("ca", ["ca", "issuing-ca"])
def test_init_writes_an_empty_crl_the_broker_can_read(pki: Path, ca: str):
    ca_cert = load_certificate(pki / f"{ca}.crt")
    path = crl_path(pki, ca_cert)
    assert path.parent == pki / "crl" and path.name == f"{openssl_name_hash(ca_cert.subject)}.r0"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    crl = current_crl(pki, ca)
    assert len(crl) == 0 and crl.is_signature_valid(ca_cert.public_key())
    assert crl.next_update_utc == ca_cert.not_valid_after_utc


def test_revoke_lists_the_certificate_and_archives_its_pair(pki: Path):
    worker = load_certificate(pki / "worker.crt")
    number = crl_number(current_crl(pki))
    result = revoke(pki, "worker")
    assert serials(current_crl(pki)) == {worker.serial_number}
    assert crl_number(current_crl(pki)) == number + 1
    assert not (pki / "worker.crt").exists() and not (pki / "worker.key").exists()
    assert load_certificate(result.archive_dir / "worker.crt").serial_number == worker.serial_number
    # An independent verifier agrees: revoked for OpenSSL, while the producer is not.
    refused = verify(pki, result.archive_dir / "worker.crt")
    assert refused.returncode != 0 and "error 23 at 0 depth lookup: certificate revoked" in refused.stdout + refused.stderr
    assert verify(pki, pki / "producer.crt").returncode == 0


def test_rotate_revokes_the_certificate_it_replaces(pki: Path):
    old = load_certificate(pki / "producer.crt")
    rotate(pki, "producer")
    new = load_certificate(pki / "producer.crt")
    assert serials(current_crl(pki)) == {old.serial_number}
    assert new.serial_number not in serials(current_crl(pki))


def test_revocations_accumulate(pki: Path):
    first = load_certificate(pki / "worker.crt")
    rotate(pki, "worker")
    second = load_certificate(pki / "worker.crt")
    revoke(pki, "worker")
    assert serials(current_crl(pki)) == {first.serial_number, second.serial_number}


def test_revoke_refuses_unknown_names_and_the_ca_and_changes_nothing(pki: Path):
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    with pytest.raises(PKIError, match="Unknown certificate 'wroker'; known names are: producer, worker"):
        revoke(pki, "wroker")
    with pytest.raises(PKIError, match="The root cannot revoke itself"):
        revoke(pki, "ca")
    with pytest.raises(PKIError, match="The root revokes the issuing CA as it replaces it"):
        revoke(pki, "issuing-ca")
    with pytest.raises(PKIError, match="replace it with `python -m tls rotate broker` instead"):
        revoke(pki, "broker")
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before


def test_a_crl_not_signed_by_this_ca_stops_revoke_and_rotate_before_anything_changes(pki: Path, tmp_path: Path):
    foreign = tmp_path / "foreign"
    bootstrap_pki(foreign, "rabbitmq", ["worker"], ca_common_name="Test CA")  # same name, other key
    path = crl_path(pki, load_certificate(pki / "issuing-ca.crt"))
    path.write_bytes(crl_path(foreign, load_certificate(foreign / "issuing-ca.crt")).read_bytes())
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    with pytest.raises(PKIError, match="is not signed by this PKI's CA; `python -m tls crl` rebuilds it"):
        revoke(pki, "worker")
    with pytest.raises(PKIError, match="is not signed by this PKI's CA"):
        rotate(pki, "producer")
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before
    assert check_crl(pki)[0] is False


def test_crl_rebuild_revokes_everything_archived(pki: Path):
    """A lost or foreign CRL is rebuilt from archive/ (every archived pair was replaced or revoked): nothing that
    was revoked comes back."""
    first_worker = load_certificate(pki / "worker.crt")
    rotate(pki, "worker")
    producer = load_certificate(pki / "producer.crt")
    revoke(pki, "producer")
    crl_path(pki, load_certificate(pki / "issuing-ca.crt")).unlink()
    assert main(["--dir", str(pki), "crl"]) == 0
    assert serials(current_crl(pki)) == {first_worker.serial_number, producer.serial_number}
    assert load_certificate(pki / "worker.crt").serial_number not in serials(current_crl(pki))


def test_cli_revoke_crl_and_inspect(pki: Path, capsys):
    assert main(["--dir", str(pki), "inspect"]) == 0
    assert "0 revoked" in capsys.readouterr().out
    assert main(["--dir", str(pki), "revoke", "worker"]) == 0
    out = capsys.readouterr().out
    assert "revoked worker; its pair is archived in" in out and "wrote " in out
    assert main(["--dir", str(pki), "inspect"]) == 0
    assert "1 revoked" in capsys.readouterr().out


def test_cli_inspect_flags_a_missing_crl_and_crl_writes_it(pki: Path, capsys):
    """A PKI from before revocation existed: the broker would refuse every client, so inspect says how to fix it."""
    root_crl = crl_path(pki, load_certificate(pki / "ca.crt"))
    kept = root_crl.read_bytes()
    shutil.rmtree(pki / "crl")
    assert main(["--dir", str(pki), "inspect"]) == 1
    out = capsys.readouterr().out
    assert "is missing; the broker refuses every client until it is back: run `python -m tls crl`." in out
    assert "(ca)" in out and "restore it from your backup of pki/crl/" in out   # the root's: its key is offline
    assert main(["--dir", str(pki), "crl"]) == 0
    assert main(["--dir", str(pki), "inspect"]) == 1
    root_crl.write_bytes(kept)
    assert main(["--dir", str(pki), "inspect"]) == 0
    assert len(current_crl(pki)) == 0


def test_replace_issuing_ca_revokes_the_old_one_and_reissues_every_leaf(pki: Path, capsys):
    """Recovery from a lost issuing key: the root revokes the old issuing CA, so every certificate it signed is
    refused along the chain (OpenSSL agrees: revoked at depth 1), and every name gets a new pair under the new one."""
    old_ca = load_certificate(pki / "issuing-ca.crt")
    old = {name: load_certificate(pki / f"{name}.crt") for name in ("broker", "worker", "producer")}
    assert main(["--dir", str(pki), "replace-issuing-ca"]) == 0      # the passphrase from pki-root/ (as baked)
    out = capsys.readouterr().out
    assert "revoked the old issuing CA" in out
    archive = next((pki / "archive").iterdir())
    assert serials(current_crl(pki, "ca")) == {old_ca.serial_number}
    assert len(current_crl(pki)) == 0 and not crl_path(pki, old_ca).exists()
    assert load_certificate(archive / "issuing-ca.crt") == old_ca
    for name, cert in old.items():
        new = load_certificate(pki / f"{name}.crt")
        assert new.subject == cert.subject and new.serial_number != cert.serial_number
        assert verify(pki, pki / f"{name}.crt").returncode == 0
        (pki / "crl" / "old.r0").write_bytes(next(archive.glob("*.crl")).read_bytes())   # the old CA's own list
        refused = verify(pki, archive / f"{name}.crt")
        (pki / "crl" / "old.r0").unlink()
        assert "error 23 at 1 depth lookup: certificate revoked" in refused.stdout + refused.stderr, refused


def test_replace_issuing_ca_needs_the_root_and_changes_nothing_without_it(pki: Path, tmp_path: Path, capsys):
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    (tmp_path / "pki-root").rename(tmp_path / "offline")
    assert main(["--dir", str(pki), "replace-issuing-ca"]) == 2
    assert "is not on this host; bring the offline root's key back" in capsys.readouterr().err
    (tmp_path / "offline" / "passphrase").write_text("not the passphrase\n")
    assert main(["--dir", str(pki), "replace-issuing-ca", "--root-dir", str(tmp_path / "offline")]) == 2
    assert "does not open with the passphrase given" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before
