"""The CA hierarchy seen by an independent verifier (OpenSSL): what a stolen issuing key cannot make."""
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from tls import (PKIError, bootstrap_pki, load_ca, load_certificate, load_root, openssl_name_hash, replace_issuing_ca,
                 rotate, write_client_pair)
from tls.__main__ import main
from tls.certificates import _issue_leaf, _key_usage
from tls.keys import generate_key
from tls.pki_directory import cert_pem, rotate_issuing_ca
from tls.revocation import crl_path, load_crl

from .test_revocation import openssl, verify


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    bootstrap_pki(tmp_path / "pki", "rabbitmq", ["worker"], ca_common_name="Test CA")
    return tmp_path / "pki"


def test_a_server_certificate_outside_the_name_constraints_is_refused(pki: Path, tmp_path: Path):
    """Signed with the issuing key directly, past the tooling's own refusal: verifiers refuse it (the twin: the
    broker's certificate, inside the constraints, verifies)."""
    ca_key, ca_cert = load_ca(pki)
    san = x509.SubjectAlternativeName([x509.DNSName("bank.example")])
    _, cert = _issue_leaf(ca_key, ca_cert, "bank.example", ExtendedKeyUsageOID.SERVER_AUTH, 30, None, san)
    (tmp_path / "evil.crt").write_bytes(cert_pem(cert, ca_cert))
    refused = verify(pki, tmp_path / "evil.crt")
    assert "permitted subtree violation" in refused.stdout + refused.stderr, refused
    assert verify(pki, pki / "broker.crt").returncode == 0


def test_a_ca_made_by_the_issuing_ca_is_refused(pki: Path, tmp_path: Path):
    """path_length=0: a stolen issuing key cannot make a sub-CA whose certificates anyone accepts."""
    ca_key, ca_cert = load_ca(pki)
    sub_key = generate_key()
    start = ca_cert.not_valid_before_utc
    sub = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=Sub CA"))
           .issuer_name(ca_cert.subject).public_key(sub_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(start).not_valid_after(start + timedelta(days=30))
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
           .add_extension(x509.SubjectKeyIdentifier.from_public_key(sub_key.public_key()), critical=False)
           .sign(ca_key, hashes.SHA256()))
    _, leaf = _issue_leaf(sub_key, sub, "worker", ExtendedKeyUsageOID.CLIENT_AUTH, 30, None, None)
    (tmp_path / "leaf.crt").write_bytes(cert_pem(leaf, sub, ca_cert))
    refused = openssl_verify_without_crls(pki, tmp_path / "leaf.crt")
    assert "path length constraint exceeded" in refused.stdout + refused.stderr, refused
    assert openssl_verify_without_crls(pki, pki / "worker.crt").returncode == 0


def openssl_verify_without_crls(pki: Path, leaf: Path):
    # The sub-CA has no CRL; without CRL checks the only refusal left is the one under test.
    return openssl("verify", "-CAfile", str(pki / "ca.crt"), "-untrusted", str(leaf), str(leaf))


def test_rotating_the_issuing_ca_keeps_both_chains_valid_until_each_leaf_moves(pki: Path, capsys):
    """`rotate-issuing-ca`: no certificate changes at once (no downtime); each `rotate` then moves one leaf under the
    new CA and revokes its old certificate on the previous CA's list; inspect says what still depends on it."""
    old_ca = load_certificate(pki / "issuing-ca.crt")
    assert main(["--dir", str(pki), "rotate-issuing-ca"]) == 0
    assert "now re-issue each certificate under the new issuing CA" in capsys.readouterr().out
    new_ca = load_certificate(pki / "issuing-ca.crt")
    assert load_certificate(pki / "previous-issuing-ca.crt") == old_ca and new_ca != old_ca
    assert sorted(p.name for p in (pki / "crl").iterdir()) == sorted(
        f"{openssl_name_hash(c.subject)}.r0" for c in (load_certificate(pki / "ca.crt"), old_ca, new_ca))
    assert verify(pki, pki / "worker.crt").returncode == 0          # the old chain, still valid
    assert main(["--dir", str(pki), "inspect"]) == 0
    assert "previous issuing CA still signs broker, worker" in capsys.readouterr().out
    old_worker = load_certificate(pki / "worker.crt")
    rotation = rotate(pki, "worker")
    assert load_certificate(pki / "worker.crt").issuer == new_ca.subject
    assert verify(pki, pki / "worker.crt").returncode == 0          # the new chain
    refused = verify(pki, rotation.archive_dir / "worker.crt")
    assert "error 23 at 0 depth lookup: certificate revoked" in refused.stdout + refused.stderr
    assert old_worker.serial_number in {e.serial_number for e in load_crl(pki, old_ca)}


def test_the_next_rotation_retires_the_previous_issuing_ca_once_nothing_depends_on_it(pki: Path, tmp_path: Path):
    root_key, _ = load_root(pki)
    spare = tmp_path / "spare.crt"       # a certificate of the first CA that nothing revoked
    write_client_pair(pki, "spare", tmp_path)
    rotate_issuing_ca(pki, root_key)
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    with pytest.raises(PKIError, match="The previous issuing CA still signs broker, worker; re-issue each"):
        rotate_issuing_ca(pki, root_key)
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before
    first_ca = load_certificate(pki / "previous-issuing-ca.crt")
    rotate(pki, "worker")
    rotate(pki, "broker")
    result = rotate_issuing_ca(pki, root_key)
    assert result.archive_dir is not None and load_certificate(result.archive_dir / "previous-issuing-ca.crt") == first_ca
    assert first_ca.serial_number in {e.serial_number for e in load_crl(pki, load_certificate(pki / "ca.crt"))}
    assert not crl_path(pki, first_ca).exists()     # the root's list refuses its certificates now
    crls = tmp_path / "crls"       # pki/crl plus the retired CA's own list: OpenSSL then reaches the root's verdict
    shutil.copytree(pki / "crl", crls)
    shutil.copy(next(result.archive_dir.glob("*.crl")), crls / "retired.r0")
    refused = verify(pki, spare, crls)
    assert "error 23 at 1 depth lookup: certificate revoked" in refused.stdout + refused.stderr, refused
    assert verify(pki, pki / "worker.crt").returncode == 0          # the second CA's, previous now


def test_replacing_the_issuing_ca_during_an_overlap_revokes_both(pki: Path):
    root_key, root_cert = load_root(pki)
    cas = [load_certificate(pki / "issuing-ca.crt")]
    rotate_issuing_ca(pki, root_key)
    cas.append(load_certificate(pki / "issuing-ca.crt"))
    replace_issuing_ca(pki, root_key)
    assert {c.serial_number for c in cas} <= {e.serial_number for e in load_crl(pki, root_cert)}
    assert not (pki / "previous-issuing-ca.crt").exists() and not (pki / "previous-issuing-ca.key").exists()
    assert verify(pki, pki / "worker.crt").returncode == 0


def test_the_root_refuses_to_start_a_new_crl_over_a_lost_one(pki: Path):
    """A new root CRL would forget every issuing CA the root revoked: restore the list, then rotate."""
    root_key, root_cert = load_root(pki)
    rotate_issuing_ca(pki, root_key)
    rotate(pki, "worker")
    rotate(pki, "broker")
    crl_path(pki, root_cert).unlink()
    before = {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()}
    for operation in (rotate_issuing_ca, replace_issuing_ca):
        with pytest.raises(PKIError, match=r"The root's revocation list .* is missing; restore it from your backup"):
            operation(pki, root_key)
    assert {p: p.read_bytes() for p in pki.rglob("*") if p.is_file()} == before


def test_a_ca_name_with_a_slash_survives_two_rotations(tmp_path: Path):
    bootstrap_pki(tmp_path / "pki", "rabbitmq", ["worker"], ca_common_name="Ops/Infra CA")
    pki = tmp_path / "pki"
    root_key, _ = load_root(pki)
    rotate_issuing_ca(pki, root_key)
    rotate(pki, "worker")
    rotate(pki, "broker")
    result = rotate_issuing_ca(pki, root_key)
    assert result.archive_dir is not None and len(list(result.archive_dir.glob("crl-*.crl"))) == 1


def test_init_takes_the_root_passphrase_from_a_file(tmp_path: Path, capsys):
    (tmp_path / "pass").write_text("a passphrase kept elsewhere\n")
    assert main(["--dir", str(tmp_path / "pki"), "init", "--broker-host", "rabbitmq", "--client", "worker",
                 "--root-passphrase-file", str(tmp_path / "pass")]) == 0
    assert not (tmp_path / "pki-root" / "passphrase").exists()
    load_root(tmp_path / "pki", passphrase=b"a passphrase kept elsewhere")
    assert main(["--dir", str(tmp_path / "p2"), "init", "--broker-host", "rabbitmq", "--client", "worker",
                 "--root-passphrase-file", str(tmp_path / "missing")]) == 2
    assert "Passphrase file" in capsys.readouterr().err and not (tmp_path / "p2").exists()
