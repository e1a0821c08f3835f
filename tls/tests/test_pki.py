"""Unit tests for the tls package; every file lives under pytest's tmp_path."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tls import (
    ChownRequired,
    PKIError,
    add_client,
    add_local_server,
    add_server,
    bootstrap_pki,
    create_root_ca,
    describe,
    issue_client_certificate,
    issue_server_certificate,
    load_ca,
    load_certificate,
    load_private_key,
    load_root,
    rotate,
    server_alt_names,
    verify_chain,
)
from tls.__main__ import main
from tls.pki_directory import CERT_MODE, KEY_MODE, cert_pem, write_atomic

ROLES = ["worker", "producer", "auditor"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the directory that contains tls/


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    pki_dir = tmp_path / "pki"
    bootstrap_pki(pki_dir, "rabbitmq", ROLES, ca_common_name="Test CA")
    return pki_dir


@pytest.fixture(scope="module")
def ca():
    return create_root_ca("Test CA")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def eku(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


# --- bootstrap and layout -------------------------------------------------------------------------


def test_bootstrap_creates_all_files_with_modes(pki: Path):
    names = ["issuing-ca", "broker", *ROLES]
    pairs = [f"{n}.{ext}" for n in names for ext in ("crt", "key")]
    assert sorted(p.name for p in pki.iterdir()) == sorted(["crl", "ca.crt", *pairs])   # the root's key is not here
    for name in names:
        assert mode(pki / f"{name}.key") == 0o600
        assert mode(pki / f"{name}.crt") == 0o644
        assert (pki / f"{name}.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert describe(pki / "ca.crt")["subject_cn"] == "Test CA"
    root = pki.parent / "pki-root"
    assert sorted(p.name for p in root.iterdir()) == ["ca.key", "passphrase"] and mode(root) == 0o700
    assert mode(root / "ca.key") == mode(root / "passphrase") == 0o600
    assert (root / "ca.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_bootstrap_returns_created_paths(tmp_path: Path):
    created = bootstrap_pki(tmp_path / "p", "rabbitmq", ["worker"])
    pairs = {p.name for p in created if p.parent.name == "p"}
    assert pairs == {"ca.crt", "issuing-ca.crt", "issuing-ca.key", "broker.crt", "broker.key", "worker.crt",
                     "worker.key"}
    assert {p.name for p in created if p.parent.name == "p-root"} == {"ca.key", "passphrase"}
    assert sum(p.parent.name == "crl" for p in created) == 2    # the root's and the issuing CA's (empty) lists
    assert all(p.exists() for p in created)


def test_a_given_root_passphrase_is_used_and_not_written(tmp_path: Path):
    bootstrap_pki(tmp_path / "pki", "rabbitmq", ["worker"], root_dir=tmp_path / "offline",
                  root_passphrase=b"correct horse battery")
    assert sorted(p.name for p in (tmp_path / "offline").iterdir()) == ["ca.key"]
    _, cert = load_root(tmp_path / "pki", tmp_path / "offline", b"correct horse battery")
    assert cert.subject == load_certificate(tmp_path / "pki" / "ca.crt").subject
    with pytest.raises(PKIError, match="does not open with the passphrase given"):
        load_root(tmp_path / "pki", tmp_path / "offline", b"wrong horse battery")
    with pytest.raises(PKIError, match="passphrase is needed"):
        load_root(tmp_path / "pki", tmp_path / "offline")     # no file, no terminal
    with pytest.raises(PKIError, match="shorter than 12"):
        bootstrap_pki(tmp_path / "pki2", "rabbitmq", ["worker"], root_passphrase=b"short")


def test_the_root_and_issuing_ca_extensions(pki: Path):
    root, issuing = load_certificate(pki / "ca.crt"), load_certificate(pki / "issuing-ca.crt")
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    constraints = issuing.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical and constraints.value.excluded_subtrees is None
    assert {str(n.value) for n in constraints.value.permitted_subtrees} == {"rabbitmq", "localhost", "127.0.0.1/32"}
    verify_chain(root, issuing)
    assert 3640 <= describe(pki / "ca.crt")["days_left"] <= 3650
    assert 725 <= describe(pki / "issuing-ca.crt")["days_left"] <= 730
    for name in ("broker", *ROLES):   # every leaf file: the leaf, then the issuing CA (the chain TLS presents)
        chain = x509.load_pem_x509_certificates((pki / f"{name}.crt").read_bytes())
        assert [c.subject for c in chain[1:]] == [issuing.subject]
        verify_chain(issuing, chain[0])


def test_the_issuing_ca_signs_no_names_outside_its_constraints(pki: Path):
    with pytest.raises(PKIError, match=r"evil.example, 10.0.0.1 is outside what CA '.*' may certify "
                                       r"\(rabbitmq, localhost, 127.0.0.1/32\)"):
        issue_server_certificate(*load_ca(pki), "evil.example", ["evil.example"], ["10.0.0.1"])
    issue_server_certificate(*load_ca(pki), "rabbitmq", ["sub.rabbitmq"], ["127.0.0.1"])   # a subtree is inside


def test_other_servers_of_the_project_are_certified_within_the_constraints(tmp_path: Path):
    """The result store (result_backend = redis): its own server certificate, its names permitted by the issuing
    CA beside the broker's, and still permitted after `rotate-issuing-ca`."""
    from tls.pki_directory import rotate_issuing_ca
    pki = tmp_path / "pki"
    bootstrap_pki(pki, "rabbitmq", ROLES, ca_common_name="Test CA", servers=["results"])
    issuing = load_certificate(pki / "issuing-ca.crt")
    permitted = {str(n.value) for n in issuing.extensions.get_extension_for_class(x509.NameConstraints)
                 .value.permitted_subtrees}
    assert permitted == {"rabbitmq", "results", "localhost", "127.0.0.1/32"}
    store = describe(pki / "results.crt")
    assert store["subject_cn"] == "results" and "serverAuth" in store["eku"]
    verify_chain(issuing, load_certificate(pki / "results.crt"))
    rotate_issuing_ca(pki, load_root(pki)[0])
    renewed = load_certificate(pki / "issuing-ca.crt")
    assert {str(n.value) for n in renewed.extensions.get_extension_for_class(x509.NameConstraints)
            .value.permitted_subtrees} == permitted
    rotate(pki, "results")                                  # re-issued under the new issuing CA, same names
    verify_chain(renewed, load_certificate(pki / "results.crt"))


@pytest.mark.parametrize("servers, problem", [(["rabbitmq"], "must differ"), (["worker"], "must differ"),
                                              (["results", "results"], "must differ"), (["Bad_Host"], "is invalid")])
def test_a_server_name_that_clashes_or_is_no_host_is_refused_before_anything_is_written(tmp_path, servers, problem):
    with pytest.raises(PKIError, match=problem):
        bootstrap_pki(tmp_path / "pki", "rabbitmq", ROLES, servers=servers)
    assert not (tmp_path / "pki").exists()


def test_ca_extensions(ca):
    _, cert = ca
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.signature_hash_algorithm.name == "sha256"
    assert cert.public_key().curve.name == "secp256r1"


def test_server_certificate_sans_and_eku(pki: Path):
    cert = load_certificate(pki / "broker.crt")
    info = describe(pki / "broker.crt")
    assert info["subject_cn"] == "rabbitmq"
    assert {"rabbitmq", "localhost"} <= set(info["dns_names"])
    assert info["ip_addresses"] == ["127.0.0.1"]
    assert eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH] and info["eku"] == ["serverAuth"]
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).critical
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = load_certificate(pki / "issuing-ca.crt").extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    verify_chain(load_certificate(pki / "issuing-ca.crt"), cert)


def test_server_alt_names_helper():
    assert server_alt_names("rabbitmq") == (["rabbitmq", "localhost"], ["127.0.0.1"])
    assert server_alt_names("localhost") == (["localhost"], ["127.0.0.1"])
    assert server_alt_names("10.0.0.5") == (["localhost"], ["10.0.0.5", "127.0.0.1"])


def test_client_certificate_chains_and_has_client_auth(pki: Path):
    ca_cert, cert = load_certificate(pki / "issuing-ca.crt"), load_certificate(pki / "worker.crt")
    verify_chain(ca_cert, cert)
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    info = describe(pki / "worker.crt")
    assert info["subject_cn"] == "worker" and info["issuer_cn"].startswith("Test CA Issuing ")
    assert info["sans"] == [] and info["is_ca"] is False and 360 <= info["days_left"] <= 365


def test_lifetimes_follow_current_practice(pki: Path):
    """Broker: the CA/Browser Forum's 200 days (since 2026-03-15); clients a year; nothing over 398 days."""
    assert 195 <= describe(pki / "broker.crt")["days_left"] <= 200
    assert 360 <= describe(pki / "producer.crt")["days_left"] <= 365
    ca_key, ca_cert = load_ca(pki)
    with pytest.raises(PKIError, match="from 1 to 398"):
        issue_client_certificate(ca_key, ca_cert, "worker", valid_days=399)


def test_verify_chain_rejects_other_ca(ca):
    other_key, other_cert = create_root_ca("Other CA")
    _, cert = issue_client_certificate(other_key, other_cert, "worker")
    with pytest.raises(PKIError, match="not issued by CA 'Test CA'"):
        verify_chain(ca[1], cert)


def test_expired_certificate_is_reported(ca):
    _, cert = issue_client_certificate(
        *ca, "worker", valid_days=1, not_valid_before=datetime.now(timezone.utc) - timedelta(days=10)
    )
    with pytest.raises(PKIError, match="expired"):
        verify_chain(ca[1], cert)


def test_describe_reports_expired(tmp_path: Path, ca):
    _, cert = issue_server_certificate(
        *ca, "rabbitmq", *server_alt_names("rabbitmq"), valid_days=1,
        not_valid_before=datetime.now(timezone.utc) - timedelta(days=10),
    )
    path = write_atomic(tmp_path / "broker.crt", cert_pem(cert), CERT_MODE)
    info = describe(path)
    assert info["expired"] is True and info["days_left"] < 0
    assert info["not_after"].startswith((datetime.now(timezone.utc) - timedelta(days=9)).date().isoformat())
    assert len(info["sha256"].split(":")) == 32 and int(info["serial"], 16) == cert.serial_number


def test_leaf_never_outlives_ca():
    ca_key, ca_cert = create_root_ca("Short CA", valid_days=10)
    _, cert = issue_client_certificate(ca_key, ca_cert, "worker", valid_days=365)
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc


# --- input validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, message",
    [
        ("", "empty"),
        ("bad host", "invalid"),
        ("*.example.com", "invalid"),
        ("-rabbit", "invalid"),
        ("rabbit-", "invalid"),
        ("a..b", "invalid"),
        ("a" * 64, "at most 63 characters"),
        ("a" * 40 + "." + "b" * 30, "longer than 64"),
        ("999.1.1.1", "numeric label"),
    ],
)
def test_invalid_host_names_rejected(tmp_path: Path, host: str, message: str):
    with pytest.raises(PKIError, match=message):
        bootstrap_pki(tmp_path / "pki", host, ["worker"])
    assert not (tmp_path / "pki").exists()


@pytest.mark.parametrize("role", ["", "two words", "*", "-worker", "a.b", "../etc", "w" * 65, "broker", "ca"])
def test_invalid_roles_rejected(tmp_path: Path, role: str):
    with pytest.raises(PKIError, match="Role name"):
        bootstrap_pki(tmp_path / "pki", "rabbitmq", [role])
    assert not (tmp_path / "pki").exists()


def test_duplicate_roles_rejected(tmp_path: Path):
    with pytest.raises(PKIError, match="duplicate"):
        bootstrap_pki(tmp_path / "pki", "rabbitmq", ["worker", "worker"])


def test_bad_ip_rejected(ca):
    with pytest.raises(PKIError, match="IP address '300.1.1.1' does not parse"):
        issue_server_certificate(*ca, "rabbitmq", ["rabbitmq"], ["300.1.1.1"])


def test_bad_dns_san_rejected(ca):
    with pytest.raises(PKIError, match=r"Host name '\*.example.com' is invalid"):
        issue_server_certificate(*ca, "rabbitmq", ["*.example.com"], [])


def test_server_needs_a_san(ca):
    with pytest.raises(PKIError, match="at least one"):
        issue_server_certificate(*ca, "rabbitmq", [], [])


@pytest.mark.parametrize("days", [0, -1, 826, 100000, True, "30", 1.5])
def test_bad_leaf_days_rejected(ca, days):
    with pytest.raises(PKIError, match="from 1 to 398"):
        issue_client_certificate(*ca, "worker", valid_days=days)


@pytest.mark.parametrize("days", [0, 3651])
def test_bad_ca_days_rejected(days):
    with pytest.raises(PKIError, match="from 1 to 3650"):
        create_root_ca("Test CA", valid_days=days)


@pytest.mark.parametrize("name", ["", " CA", "bad\nname", "*.ca", "x" * 65])
def test_bad_ca_name_rejected(name):
    with pytest.raises(PKIError, match="CA common name"):
        create_root_ca(name)


def test_non_ca_cannot_sign(ca):
    leaf_key, leaf_cert = issue_client_certificate(*ca, "worker")
    with pytest.raises(PKIError, match="not a CA"):
        issue_client_certificate(leaf_key, leaf_cert, "producer")


def test_mismatched_ca_key_rejected(ca):
    other_key, _ = create_root_ca("Other CA")
    with pytest.raises(PKIError, match="does not match"):
        issue_client_certificate(other_key, ca[1], "worker")


def test_load_helpers_name_the_file(tmp_path: Path):
    missing, garbled = tmp_path / "missing.crt", tmp_path / "garbled.pem"
    garbled.write_text("not pem")
    for loader in (load_certificate, load_private_key):
        with pytest.raises(PKIError, match=f"{missing} does not exist"):
            loader(missing)
        with pytest.raises(PKIError, match=str(garbled)):
            loader(garbled)


# --- no silent overwrite, atomic writes, ownership ------------------------------------------------


def test_bootstrap_refuses_existing_ca_and_changes_nothing(pki: Path):
    before = snapshot(pki)
    with pytest.raises(PKIError, match=r"already holds a CA; use `python -m tls rotate"):
        bootstrap_pki(pki, "rabbitmq", ROLES)
    assert snapshot(pki) == before


def test_bootstrap_refuses_stray_leaf_file(tmp_path: Path):
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    (pki_dir / "worker.key").write_bytes(b"precious")
    with pytest.raises(PKIError, match="worker.key already exists"):
        bootstrap_pki(pki_dir, "rabbitmq", ["worker"])
    assert snapshot(pki_dir) == {"worker.key": b"precious"}


def test_bootstrap_rolls_back_on_write_failure(tmp_path: Path, monkeypatch):
    import tls.pki_directory

    real = tls.pki_directory.write_atomic
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tls.pki_directory, "write_atomic", failing)
    with pytest.raises(OSError):
        bootstrap_pki(tmp_path / "pki", "rabbitmq", ["worker"])
    assert list((tmp_path / "pki").iterdir()) == []


def test_write_atomic_refuses_overwrite_unless_asked(tmp_path: Path):
    path = tmp_path / "x.key"
    write_atomic(path, b"one", KEY_MODE)
    with pytest.raises(PKIError, match="already exists"):
        write_atomic(path, b"two", KEY_MODE)
    assert path.read_bytes() == b"one"
    write_atomic(path, b"two", KEY_MODE, overwrite=True)
    assert path.read_bytes() == b"two" and mode(path) == 0o600


def test_write_atomic_leaves_no_temp_files(tmp_path: Path, monkeypatch):
    write_atomic(tmp_path / "a.crt", b"cert", CERT_MODE)
    assert [p.name for p in tmp_path.iterdir()] == ["a.crt"]

    def broken_fsync(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "b.key", b"key", KEY_MODE)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "a.crt", b"new", CERT_MODE, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["a.crt"]
    assert (tmp_path / "a.crt").read_bytes() == b"cert"


def test_modes_ignore_umask(tmp_path: Path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "a.crt", b"cert", CERT_MODE)
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.crt") == 0o644


def test_chown_denied_tells_user_the_sudo_command(tmp_path: Path, monkeypatch):
    def denied(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", denied)
    pki_dir = tmp_path / "pki"
    with pytest.raises(ChownRequired) as exc:
        bootstrap_pki(pki_dir, "rabbitmq", ["worker"], owners={"broker": (999, 999), "worker": (1000, 1001)})
    message = str(exc.value)
    assert f"sudo chown 999:999 {pki_dir / 'broker.key'}" in message
    assert f"sudo chown 1000:1001 {pki_dir / 'worker.key'}" in message
    assert (pki_dir / "worker.crt").exists()  # the PKI is complete; only ownership is left


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_owner_applied_and_kept_on_rotation(pki: Path, tmp_path: Path):
    add_client(pki, "flower", owner=(12345, 23456))
    st = (pki / "flower.key").stat()
    assert (st.st_uid, st.st_gid, mode(pki / "flower.key")) == (12345, 23456, 0o600)
    rotate(pki, "flower")
    st = (pki / "flower.key").stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)


def test_bootstrap_rejects_owner_for_unknown_name(tmp_path: Path):
    with pytest.raises(PKIError, match="known names are: issuing-ca, broker, worker"):
        bootstrap_pki(tmp_path / "pki", "rabbitmq", ["worker"], owners={"wokrer": (1, 1)})


# --- issuing into an existing PKI, rotation -------------------------------------------------------


def test_add_client_and_refuse_existing(pki: Path):
    created = add_client(pki, "flower", valid_days=30)
    assert {p.name for p in created} == {"flower.crt", "flower.key"}
    assert describe(pki / "flower.crt")["days_left"] in (29, 30)
    before = snapshot(pki)
    with pytest.raises(PKIError, match="rotate worker"):
        add_client(pki, "worker")
    with pytest.raises(PKIError, match="rotate broker"):
        add_server(pki, "other-host")
    assert snapshot(pki) == before


def test_add_server_when_missing(pki: Path):
    (pki / "broker.crt").unlink()
    (pki / "broker.key").unlink()
    with pytest.raises(PKIError, match="mq.internal is outside what CA"):   # the issuing CA's name constraints
        add_server(pki, "mq.internal")
    assert not (pki / "broker.crt").exists()
    add_server(pki, "rabbitmq")
    assert describe(pki / "broker.crt")["sans"] == ["rabbitmq", "localhost", "127.0.0.1"]


def test_add_local_server_certifies_loopback_only_and_refuses_reserved_names(pki: Path):
    created = add_local_server(pki, "dashboard-billing")
    assert {p.name for p in created} == {"dashboard-billing.crt", "dashboard-billing.key"}
    info = describe(pki / "dashboard-billing.crt")
    assert info["sans"] == ["localhost", "127.0.0.1"] and info["eku"] == ["serverAuth"]   # never the broker's name
    verify_chain(load_certificate(pki / "issuing-ca.crt"), load_certificate(pki / "dashboard-billing.crt"))
    before = snapshot(pki)
    for taken in ("dashboard-billing", "broker", "issuing-ca"):
        with pytest.raises(PKIError, match="reserved"):
            add_local_server(pki, taken)
    assert snapshot(pki) == before


def test_rotate_archives_old_pair_and_keeps_identity(pki: Path):
    old_crt, old_key = (pki / "broker.crt").read_bytes(), (pki / "broker.key").read_bytes()
    old = describe(pki / "broker.crt")
    result = rotate(pki, "broker")
    assert (result.archive_dir / "broker.crt").read_bytes() == old_crt
    assert (result.archive_dir / "broker.key").read_bytes() == old_key
    assert result.archive_dir.parent == pki / "archive" and mode(result.archive_dir) == 0o700
    new = describe(pki / "broker.crt")
    assert (pki / "broker.key").read_bytes() != old_key
    assert new["serial"] != old["serial"]
    for field in ("subject_cn", "issuer_cn", "dns_names", "ip_addresses", "eku"):
        assert new[field] == old[field]
    assert mode(pki / "broker.key") == 0o600 and mode(pki / "broker.crt") == 0o644
    verify_chain(load_certificate(pki / "issuing-ca.crt"), load_certificate(pki / "broker.crt"))
    new_key = load_private_key(pki / "broker.key")
    assert new_key.public_key().public_numbers() == load_certificate(pki / "broker.crt").public_key().public_numbers()


def test_rotate_twice_keeps_both_archives(pki: Path):
    first, second = rotate(pki, "worker"), rotate(pki, "worker")
    assert first.archive_dir != second.archive_dir
    assert describe(pki / "worker.crt")["eku"] == ["clientAuth"]


def test_rotate_refuses_unknown_and_ca(pki: Path):
    before = snapshot(pki)
    with pytest.raises(PKIError, match="Unknown certificate 'wroker'; known names are: broker, auditor, producer, worker"):
        rotate(pki, "wroker")
    with pytest.raises(PKIError, match="invalidates every certificate"):
        rotate(pki, "ca")
    assert snapshot(pki) == before


def test_rotate_restores_old_pair_on_failure(pki: Path, monkeypatch):
    import tls.pki_directory

    before = snapshot(pki)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tls.pki_directory, "write_in_place", full_disk)
    with pytest.raises(OSError):
        rotate(pki, "worker")
    assert snapshot(pki) == before


def test_rotate_rewrites_the_pair_in_place(pki: Path):
    """A container mounts a secret file by inode: the rotated pair must be the same files, with the same mode."""
    inodes = {name: (pki / name).stat().st_ino for name in ("broker.crt", "broker.key")}
    old_serial = describe(pki / "broker.crt")["serial"]
    rotate(pki, "broker")
    assert {name: (pki / name).stat().st_ino for name in inodes} == inodes
    assert describe(pki / "broker.crt")["serial"] != old_serial
    assert mode(pki / "broker.key") == 0o600 and mode(pki / "broker.crt") == 0o644


# --- CLI ------------------------------------------------------------------------------------------


def cli_init(pki_dir: Path) -> int:
    return main(["--dir", str(pki_dir), "init", "--broker-host", "rabbitmq", "--client", "worker",
                 "--client", "producer", "--ca-name", "Demo CA"])


def test_cli_init_inspect_rotate(tmp_path: Path, capsys):
    pki_dir = tmp_path / "pki"
    assert cli_init(pki_dir) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'pki-root' / 'ca.key'}" in out and "PRIVATE KEY" not in out

    assert main(["--dir", str(pki_dir), "inspect"]) == 0
    out = capsys.readouterr().out
    assert "broker" in out and "rabbitmq,localhost,127.0.0.1" in out and "EXPIRING" not in out
    assert f"root: {tmp_path / 'pki-root' / 'ca.key'} is on this host; move it" in out

    assert main(["inspect", "--dir", str(pki_dir), "--warn-days", "400"]) == 1
    assert "EXPIRING" in capsys.readouterr().out

    assert main(["--dir", str(pki_dir), "rotate", "worker"]) == 0
    assert "archived old worker pair" in capsys.readouterr().out
    assert main(["--dir", str(pki_dir), "issue-client", "auditor", "--days", "90"]) == 0
    assert (pki_dir / "auditor.key").exists()


def test_cli_inspect_flags_expired_certificate(tmp_path: Path, capsys):
    pki_dir = tmp_path / "pki"
    cli_init(pki_dir)
    ca_key, ca_cert = load_ca(pki_dir)
    _, cert = issue_client_certificate(
        ca_key, ca_cert, "worker", valid_days=1, not_valid_before=datetime.now(timezone.utc) - timedelta(days=10)
    )
    write_atomic(pki_dir / "worker.crt", cert_pem(cert), CERT_MODE, overwrite=True)
    capsys.readouterr()
    assert main(["--dir", str(pki_dir), "inspect"]) == 1
    out = capsys.readouterr().out
    assert "EXPIRED" in out and "worker: Certificate 'worker' expired on" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["init", "--broker-host", "bad host", "--client", "worker"], "Host name 'bad host' is invalid"),
        (["init", "--broker-host", "rabbitmq", "--client", "worker", "--owner", "worker=abc"], "UID:GID"),
        (["init", "--broker-host", "rabbitmq", "--client", "worker", "--owner", "999:999"], "NAME=UID:GID"),
    ],
)
def test_cli_bad_init_input_writes_nothing(tmp_path: Path, capsys, argv, message):
    pki_dir = tmp_path / "pki"
    assert main(["--dir", str(pki_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not pki_dir.exists()


def test_cli_errors_on_existing_pki(tmp_path: Path, capsys):
    pki_dir = tmp_path / "pki"
    cli_init(pki_dir)
    before = snapshot(pki_dir)
    capsys.readouterr()
    cases = [
        (["init", "--broker-host", "rabbitmq", "--client", "worker"], "already holds a CA"),
        (["issue-client", "worker"], "already has a certificate"),
        (["issue-client", "new", "--days", "0"], "from 1 to 398"),
        (["issue-server", "--host", "rabbitmq"], "rotate broker"),
        (["rotate", "nobody"], "known names are: broker, producer, worker"),
        (["rotate", "ca"], "invalidates every certificate"),
        (["rotate", "worker", "--days", "0"], "from 1 to 398"),
        (["issue-client", "new", "--owner", "x:1"], "UID:GID"),
        (["inspect", "--warn-days", "-1"], "--warn-days"),
    ]
    for argv, message in cases:
        assert main(["--dir", str(pki_dir), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (argv, err)
    assert snapshot(pki_dir) == before


@pytest.mark.parametrize("command", [["inspect"], ["rotate", "worker"], ["issue-client", "worker"]])
def test_cli_missing_dir(tmp_path: Path, capsys, command):
    assert main(["--dir", str(tmp_path / "nope"), *command]) == 2
    assert "error: PKI directory" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


def test_cli_as_module_subprocess(tmp_path: Path):
    pki_dir = tmp_path / "pki"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "tls", "--dir", str(pki_dir), *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
        )

    assert run("init", "--broker-host", "rabbitmq", "--client", "worker").returncode == 0
    done = run("inspect")
    assert done.returncode == 0 and "worker" in done.stdout
    done = run("rotate", "nobody")
    assert done.returncode == 2 and done.stderr.startswith("error: Unknown certificate 'nobody'")
    assert "PRIVATE KEY" not in done.stdout + done.stderr


# --- real TLS handshakes --------------------------------------------------------------------------


def server_context(pki_dir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki_dir / "ca.crt")
    ctx.load_cert_chain(pki_dir / "broker.crt", pki_dir / "broker.key")
    return ctx


def client_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    assert ctx.check_hostname
    ctx.load_verify_locations(ca_file)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> dict:
    """Run both ends over a local socketpair; return the server's view and any errors."""
    server_sock, client_sock = socket.socketpair()
    for s in (server_sock, client_sock):
        s.settimeout(10)
    result: dict = {}

    def serve():
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls_sock:
                result["peer"] = tls_sock.getpeercert()
                tls_sock.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = exc
        finally:
            server_sock.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname=server_hostname) as tls_sock:
            result["data"] = tls_sock.recv(2)
    except (ssl.SSLError, OSError) as exc:
        result["client_error"] = exc
    finally:
        client_sock.close()
        thread.join(15)
    assert not thread.is_alive()
    return result


@pytest.mark.parametrize("hostname", ["localhost", "rabbitmq", "127.0.0.1"])
def test_mutual_tls_handshake(pki: Path, hostname: str):
    client = client_context(pki / "ca.crt", pki / "worker.crt", pki / "worker.key")
    result = handshake(server_context(pki), client, hostname)
    assert "server_error" not in result and "client_error" not in result, result
    assert result["data"] == b"ok"
    assert dict(x[0] for x in result["peer"]["subject"])["commonName"] == "worker"


def test_client_rejects_wrong_hostname(pki: Path):
    client = client_context(pki / "ca.crt", pki / "worker.crt", pki / "worker.key")
    result = handshake(server_context(pki), client, "evil.example")
    assert isinstance(result.get("client_error"), ssl.SSLCertVerificationError)


def test_server_refuses_client_from_another_ca(pki: Path, tmp_path: Path):
    other_key, other_ca = create_root_ca("Rogue CA")
    key, cert = issue_client_certificate(other_key, other_ca, "worker")
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    write_atomic(rogue / "worker.crt", cert_pem(cert), CERT_MODE)
    write_atomic(
        rogue / "worker.key",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        KEY_MODE,
    )
    client = client_context(pki / "ca.crt", rogue / "worker.crt", rogue / "worker.key")
    result = handshake(server_context(pki), client, "localhost")
    assert isinstance(result.get("server_error"), ssl.SSLError), result
    assert "peer" not in result and "data" not in result
