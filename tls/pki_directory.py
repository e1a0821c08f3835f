"""The PKI directory on disk: atomic writes, bootstrap, issuing, rotation, revocation and health checks."""

from __future__ import annotations

import os
import secrets
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from .certificates import (
    alt_names,
    create_ca,
    describe_certificate,
    eku_names,
    issue_client_certificate,
    issue_server_certificate,
    load_certificate,
    server_alt_names,
    verify_chain,
)
from .errors import ChownRequired, PKIError
from .keys import load_private_key, private_key_pem
from .revocation import CRL_DIR_MODE, CRL_MODE, crl_path, crl_pem, crl_with, is_revoked, load_crl
from .policy import CLIENT_DAYS, SERVER_DAYS, check_ca_name, check_client_role, check_host, check_owner

DEFAULT_DIR = Path("pki")
DEFAULT_CA_NAME = "Celery PKI CA"
BROKER = "broker"
CA = "ca"
KEY_MODE = 0o600
CERT_MODE = 0o644

Owner = tuple[int, int]


class Rotation(NamedTuple):
    written: list[Path]
    archive_dir: Path


class Revocation(NamedTuple):
    crl: Path
    archive_dir: Path


def cert_path(pki_dir: Path, name: str) -> Path:
    return Path(pki_dir) / f"{name}.crt"


def key_path(pki_dir: Path, name: str) -> Path:
    return Path(pki_dir) / f"{name}.key"


def _chown_command(path: Path, owner: Owner) -> str:
    return f"sudo chown {owner[0]}:{owner[1]} {path}"


def _raise_pending_chowns(pending: list[str]) -> None:
    if pending:
        raise ChownRequired(pending)


def write_atomic(
    path: Path,
    data: bytes,
    mode: int,
    *,
    overwrite: bool = False,
    owner: Owner | None = None,
    pending_chowns: list[str] | None = None,
) -> Path:
    """Write `data` so `path` is either absent, the old file, or the complete new file — never partial.

    If chown to `owner` is not permitted the file is still written and the needed
    `sudo chown` command is appended to `pending_chowns` (or raised at once if None).
    """
    path = Path(path)
    owner = check_owner(owner)
    if path.exists() and not overwrite:
        raise PKIError(f"{path} already exists; refusing to overwrite it.")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # 0600 from the first byte, so a key is never briefly world-readable; O_EXCL/O_NOFOLLOW defeat symlink tricks.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    chown_denied = False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # explicit: the umask may have stripped bits from os.open's mode
            if owner is not None:
                try:
                    os.fchown(f.fileno(), *owner)
                except PermissionError:
                    chown_denied = True
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    if chown_denied and owner is not None:
        command = _chown_command(path, owner)
        if pending_chowns is None:
            raise ChownRequired([command])
        pending_chowns.append(command)
    return path


def write_in_place(path: Path, data: bytes) -> Path:
    """Rewrite an existing file's content, keeping its inode, owner, mode and ACL.

    A container sees a compose secret through a bind mount of the file's inode: a file replaced by rename stays
    invisible to it until it is recreated, while one rewritten in place is what the broker reads at its next
    handshake after `broker-boot reload-tls`. (The caller keeps a copy to restore from: the write is not atomic.)"""
    return _overwrite(path, data)


def _overwrite(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable across a crash.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def _write_pair(
    pki_dir: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    owner: Owner | None,
    pending_chowns: list[str],
    created: list[Path],
) -> None:
    """Write key then cert, recording each in `created` so the caller can roll back."""
    created.append(
        write_atomic(key_path(pki_dir, name), private_key_pem(key), KEY_MODE, owner=owner, pending_chowns=pending_chowns)
    )
    created.append(write_atomic(cert_path(pki_dir, name), cert_pem(cert), CERT_MODE))


def _rollback(created: list[Path]) -> None:
    for path in created:
        path.unlink(missing_ok=True)


def _require_dir(pki_dir: Path) -> Path:
    pki_dir = Path(pki_dir)
    if not pki_dir.is_dir():
        raise PKIError(f"PKI directory {pki_dir} does not exist; run `python -m tls init` first.")
    return pki_dir


def load_ca(pki_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    pki_dir = _require_dir(pki_dir)
    if not cert_path(pki_dir, CA).exists():
        raise PKIError(f"{pki_dir}/ holds no CA; run `python -m tls init` first.")
    return load_private_key(key_path(pki_dir, CA)), load_certificate(cert_path(pki_dir, CA))


def leaf_names(pki_dir: Path) -> list[str]:
    """Names of issued leaf certificates, broker first."""
    names = sorted(p.stem for p in Path(pki_dir).glob("*.crt") if p.stem != CA)
    return sorted(names, key=lambda n: n != BROKER)


def bootstrap_pki(
    pki_dir: Path,
    broker_host: str,
    client_roles: list[str],
    owners: dict[str, Owner] | None = None,
    ca_common_name: str = DEFAULT_CA_NAME,
) -> list[Path]:
    """Create CA, broker and client pairs in an empty `pki_dir`; all-or-nothing."""
    pki_dir = Path(pki_dir)
    owners = dict(owners or {})
    # Validate everything before the first byte hits the disk.
    check_ca_name(ca_common_name)
    broker_host = check_host(broker_host)
    roles = [check_client_role(r) for r in client_roles]
    if len({r.lower() for r in roles}) != len(roles):
        raise PKIError(f"Client roles {roles} contain a duplicate; each role needs its own certificate.")
    names = [CA, BROKER, *roles]
    unknown = sorted(set(owners) - set(names))
    if unknown:
        raise PKIError(f"Owner given for unknown name(s) {', '.join(unknown)}; known names are: {', '.join(names)}.")
    for owner in owners.values():
        check_owner(owner)
    if cert_path(pki_dir, CA).exists() or key_path(pki_dir, CA).exists():
        raise PKIError(
            f"{pki_dir}/ already holds a CA; use `python -m tls rotate NAME` to re-issue a certificate, "
            "or move the directory aside to start over."
        )
    existing = [p for n in names for p in (cert_path(pki_dir, n), key_path(pki_dir, n)) if p.exists()]
    if existing:
        raise PKIError(f"{existing[0]} already exists; move it aside before running init.")

    ca_key, ca_cert = create_ca(ca_common_name)
    pairs = [(CA, ca_key, ca_cert)]
    pairs.append((BROKER, *issue_server_certificate(ca_key, ca_cert, broker_host, *server_alt_names(broker_host))))
    pairs += [(role, *issue_client_certificate(ca_key, ca_cert, role)) for role in roles]

    pki_dir.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    pending: list[str] = []
    try:
        for name, key, cert in pairs:
            _write_pair(pki_dir, name, key, cert, owners.get(name), pending, created)
        # An empty CRL from the start: the broker refuses every client whose issuer has no CRL it can read.
        created.append(write_crl(pki_dir, ca_key, ca_cert, []))
    except BaseException:
        _rollback(created)
        raise
    _raise_pending_chowns(pending)
    return created


def add_client(pki_dir: Path, role: str, valid_days: int = CLIENT_DAYS, owner: Owner | None = None) -> list[Path]:
    """Issue a certificate for a new client role with the existing CA."""
    role = check_client_role(role)
    owner = check_owner(owner)
    ca_key, ca_cert = load_ca(pki_dir)
    if cert_path(pki_dir, role).exists():
        raise PKIError(f"Role {role!r} already has a certificate; use `python -m tls rotate {role}` to re-issue it.")
    key, cert = issue_client_certificate(ca_key, ca_cert, role, valid_days)
    return _write_new_pair(Path(pki_dir), role, key, cert, owner)


def add_server(pki_dir: Path, host: str, valid_days: int = SERVER_DAYS, owner: Owner | None = None) -> list[Path]:
    """Issue the broker certificate (host, localhost, 127.0.0.1) with the existing CA."""
    host = check_host(host)
    owner = check_owner(owner)
    ca_key, ca_cert = load_ca(pki_dir)
    if cert_path(pki_dir, BROKER).exists():
        raise PKIError(f"{cert_path(pki_dir, BROKER)} already exists; use `python -m tls rotate broker` to re-issue it.")
    key, cert = issue_server_certificate(ca_key, ca_cert, host, *server_alt_names(host), valid_days=valid_days)
    return _write_new_pair(Path(pki_dir), BROKER, key, cert, owner)


def _write_new_pair(pki_dir: Path, name: str, key, cert, owner: Owner | None) -> list[Path]:
    created: list[Path] = []
    pending: list[str] = []
    try:
        _write_pair(pki_dir, name, key, cert, owner, pending, created)
    except BaseException:
        _rollback(created)
        raise
    _raise_pending_chowns(pending)
    return created


def rotate(
    pki_dir: Path, name: str, owners: dict[str, Owner] | None = None, valid_days: int | None = None
) -> Rotation:
    """Re-issue leaf `name` with a new key and the same subject/SANs/EKU; a copy of the old pair goes to archive/.

    The files are rewritten in place, so a running container that mounts them sees the new pair: the broker after
    `broker-boot reload-tls` (no restart, no connection dropped), a client at its next connection."""
    pki_dir = _require_dir(pki_dir)
    if name == CA:
        raise PKIError(
            "Rotating the CA invalidates every certificate it signed; move the PKI directory aside, "
            "run `python -m tls init` again and redeploy all certificates."
        )
    known = leaf_names(pki_dir)
    if name not in known:
        raise PKIError(f"Unknown certificate {name!r}; known names are: {', '.join(known) or 'none'}.")
    ca_key, ca_cert = load_ca(pki_dir)
    old_cert_path, old_key_path = cert_path(pki_dir, name), key_path(pki_dir, name)
    old = load_certificate(old_cert_path)
    cn = describe_certificate(old)["subject_cn"]
    eku = eku_names(old)
    if "serverAuth" in eku:
        days = SERVER_DAYS if valid_days is None else valid_days
        key, cert = issue_server_certificate(ca_key, ca_cert, cn, *alt_names(old), valid_days=days)
    elif "clientAuth" in eku:
        days = CLIENT_DAYS if valid_days is None else valid_days
        key, cert = issue_client_certificate(ca_key, ca_cert, cn, valid_days=days)
    else:
        raise PKIError(f"{old_cert_path} is neither a server nor a client certificate; re-issue it by hand.")

    owner = check_owner((owners or {}).get(name))

    # Signed before anything is written: an unusable CRL stops the rotation while the PKI is still as it was.
    crl = _crl_adding(pki_dir, ca_key, ca_cert, [old])
    archive_dir = _archive(pki_dir, [old_cert_path, old_key_path], keep=True)
    chown_required = None
    try:
        # In place (same inode, owner, mode and ACL: whoever could read the old key reads the new one).
        written = [write_in_place(old_key_path, private_key_pem(key)), write_in_place(old_cert_path, cert_pem(cert))]
        if owner is not None:
            pending: list[str] = []
            _chown(old_key_path, owner, pending)
            _raise_pending_chowns(pending)
    except ChownRequired as exc:
        chown_required = exc  # the new pair is in place; only its ownership is left to the user (raised below)
    except BaseException:
        _restore(archive_dir, pki_dir)
        raise
    # Revoked only once its successor is on disk, so a failed rotation never leaves the name without a valid pair.
    written_crl = _write_crl_file(pki_dir, ca_cert, crl)
    if chown_required is not None:
        raise chown_required
    return Rotation([*written, written_crl], archive_dir)


def revoke(pki_dir: Path, name: str) -> Revocation:
    """Revoke the current certificate of client `name` (the broker refuses it from its next handshake on) and move
    its pair to archive/; `issue-client` gives the name a new one."""
    pki_dir = _require_dir(pki_dir)
    if name == CA:
        raise PKIError("The CA cannot revoke itself; to retire it, move the PKI directory aside and run "
                       "`python -m tls init`.")
    if name == BROKER:
        raise PKIError("Clients check the broker's certificate against the CA, not against a CRL: replace it with "
                       "`python -m tls rotate broker` instead.")
    known = [n for n in leaf_names(pki_dir) if n != BROKER]
    if name not in known:
        raise PKIError(f"Unknown certificate {name!r}; known names are: {', '.join(known) or 'none'}.")
    ca_key, ca_cert = load_ca(pki_dir)
    cert = load_certificate(cert_path(pki_dir, name))
    written = _write_crl_file(pki_dir, ca_cert, _crl_adding(pki_dir, ca_key, ca_cert, [cert]))
    return Revocation(written, _archive(pki_dir, [cert_path(pki_dir, name), key_path(pki_dir, name)]))


def write_crl(pki_dir: Path, ca_key, ca_cert: x509.Certificate, certificates: list[x509.Certificate]) -> Path:
    """Sign the CA's CRL anew with `certificates` added (none: the current list, or an empty one, re-signed)."""
    return _write_crl_file(pki_dir, ca_cert, _crl_adding(pki_dir, ca_key, ca_cert, certificates))


def rebuild_crl(pki_dir: Path) -> Path:
    """Sign the CRL anew from what the PKI holds: the current CRL's entries if it is this CA's, plus every
    certificate of this CA under archive/ (each was replaced by `rotate` or retired by `revoke`). Mends a PKI made
    before revocation existed, and a CRL that was lost or replaced, without un-revoking anything archived."""
    pki_dir = _require_dir(pki_dir)
    ca_key, ca_cert = load_ca(pki_dir)
    try:
        current = load_crl(pki_dir, ca_cert)
    except PKIError:
        current = None      # not this CA's, or not a CRL: replaced by one built from archive/
    crl = crl_with(ca_key, ca_cert, current, archived_certificates(pki_dir, ca_cert))
    return _write_crl_file(pki_dir, ca_cert, crl)


def archived_certificates(pki_dir: Path, ca_cert: x509.Certificate) -> list[x509.Certificate]:
    """Every certificate under archive/ that this CA issued (others, e.g. of an earlier CA, are skipped)."""
    found = []
    for path in sorted((Path(pki_dir) / "archive").glob("*/*.crt")):
        try:
            cert = load_certificate(path)
            verify_chain(ca_cert, cert, at=cert.not_valid_before_utc)   # issued by this CA (expired or not)
        except PKIError:
            continue
        found.append(cert)
    return found


def _crl_adding(pki_dir: Path, ca_key, ca_cert: x509.Certificate, certificates: list[x509.Certificate]):
    return crl_with(ca_key, ca_cert, load_crl(pki_dir, ca_cert), certificates)


def _write_crl_file(pki_dir: Path, ca_cert: x509.Certificate, crl: x509.CertificateRevocationList) -> Path:
    path = crl_path(pki_dir, ca_cert)
    path.parent.mkdir(mode=CRL_DIR_MODE, exist_ok=True)
    path.parent.chmod(CRL_DIR_MODE)  # the broker's user lists it, whatever the umask
    return write_atomic(path, crl_pem(crl), CRL_MODE, overwrite=True)


def _archive(pki_dir: Path, paths: list[Path], keep: bool = False) -> Path:
    """Move `paths` into a new archive/<time>/ directory, or copy them there (`keep`: they are rewritten in place)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    archive_dir = pki_dir / "archive" / stamp
    archive_dir.mkdir(parents=True, mode=0o700)  # fails rather than mixing into an existing archive
    for path in paths:
        if path.exists() and keep:
            write_atomic(archive_dir / path.name, path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        elif path.exists():
            os.replace(path, archive_dir / path.name)
    return archive_dir


def _restore(archive_dir: Path, pki_dir: Path) -> None:
    """Put an archived pair back (in place where the file still exists, so mounts keep following it)."""
    for path in archive_dir.iterdir():
        target = pki_dir / path.name
        if target.exists():
            _overwrite(target, path.read_bytes())
            path.unlink()
        else:
            os.replace(path, target)
    archive_dir.rmdir()


def _chown(path: Path, owner: Owner, pending: list[str]) -> None:
    try:
        os.chown(path, *owner)
    except PermissionError:
        pending.append(_chown_command(path, owner))


def check_crl(pki_dir: Path) -> tuple[bool, str]:
    """(usable, one line for `inspect`): the broker refuses every client while the CA has no CRL it can read."""
    ca_cert = load_certificate(cert_path(_require_dir(pki_dir), CA))
    try:
        crl = load_crl(pki_dir, ca_cert)
    except PKIError as exc:
        return False, f"crl: {exc}"
    if crl is None:
        return False, (f"crl: {crl_path(pki_dir, ca_cert)} is missing; the broker refuses every client until "
                       "`python -m tls crl` writes it.")
    if crl.next_update_utc is None or crl.next_update_utc <= datetime.now(timezone.utc):
        return False, (f"crl: {crl_path(pki_dir, ca_cert)} lapsed on {crl.next_update_utc:%Y-%m-%d}; "
                       "run `python -m tls crl`.")
    return True, f"crl: {crl_path(pki_dir, ca_cert)}, {len(crl)} revoked, valid until {crl.next_update_utc:%Y-%m-%d}"


def check_pki(pki_dir: Path, warn_days: int = 30) -> list[dict]:
    """describe() of every certificate plus `status` (OK/EXPIRING/EXPIRED/REVOKED/UNREADABLE) and `chain`."""
    pki_dir = _require_dir(pki_dir)
    ca_cert = load_certificate(cert_path(pki_dir, CA))
    try:
        crl = load_crl(pki_dir, ca_cert)
    except PKIError:
        crl = None  # check_crl reports it
    rows = []
    for name in [CA, *leaf_names(pki_dir)]:
        path = cert_path(pki_dir, name)
        try:
            cert = load_certificate(path)
        except PKIError as exc:
            rows.append({"name": name, "path": str(path), "status": "UNREADABLE", "chain": str(exc)})
            continue
        row = {"name": name, "path": str(path), **describe_certificate(cert)}
        try:
            verify_chain(ca_cert, cert)  # for the CA itself this checks its self-signature
            row["chain"] = "valid"
        except PKIError as exc:
            row["chain"] = str(exc)
        if name != CA and is_revoked(crl, cert):
            row["status"] = "REVOKED"
        elif row["expired"]:
            row["status"] = "EXPIRED"
        elif row["days_left"] < warn_days:
            row["status"] = "EXPIRING"
        else:
            row["status"] = "OK"
        rows.append(row)
    return rows
