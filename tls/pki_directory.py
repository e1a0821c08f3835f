"""The PKI directory on disk: atomic writes, bootstrap, issuing, rotation, revocation and health checks.

Layout: `ca.crt` is the offline root's certificate, the one trust anchor the broker and every client load. The root
signs `issuing-ca.crt`, whose key (`issuing-ca.key`) signs the leaves; every leaf's `.crt` file holds the leaf then
the issuing CA, so each side presents the whole chain. The root's key lives in a separate directory
(`<pki>-root/`, encrypted with a passphrase) that day-to-day commands never open; it is needed only to replace the
issuing CA."""

from __future__ import annotations

import getpass
import os
import secrets
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from .certificates import (
    public_key_der,
    alt_names,
    create_issuing_ca,
    create_root_ca,
    describe_certificate,
    eku_names,
    issue_client_certificate,
    issue_server_certificate,
    load_certificate,
    server_alt_names,
    verify_chain,
    LOCAL_DNS_NAMES,
    LOCAL_IP_ADDRESSES,
)
from .errors import ChownRequired, PKIError
from .keys import load_private_key, private_key_pem
from .revocation import CRL_DIR_MODE, CRL_MODE, crl_path, crl_pem, crl_with, is_revoked, load_crl
from .policy import CLIENT_DAYS, SERVER_DAYS, check_ca_name, check_client_role, check_host, check_owner

DEFAULT_DIR = Path("pki")
DEFAULT_CA_NAME = "Celery PKI CA"
BROKER = "broker"
CA = "ca"                   # the root's certificate: the trust anchor
ISSUING = "issuing-ca"      # the CA that signs leaves
PREVIOUS = "previous-issuing-ca"   # the one before `rotate-issuing-ca`, until every leaf is re-issued under the new
ROOT_KEY = "ca.key"         # in the root directory, encrypted
# In the root directory when the bake generated it: move both apart, then off the host. A file name, not a secret.
PASSPHRASE = "passphrase"  # nosec B105
KEY_MODE = 0o600
CERT_MODE = 0o644

Owner = tuple[int, int]


class Rotation(NamedTuple):
    written: list[Path]
    archive_dir: Path


class Revocation(NamedTuple):
    crl: Path
    archive_dir: Path


class Replacement(NamedTuple):
    written: list[Path]
    archive_dir: Path | None


def cert_path(pki_dir: Path, name: str) -> Path:
    return Path(pki_dir) / f"{name}.crt"


def key_path(pki_dir: Path, name: str) -> Path:
    return Path(pki_dir) / f"{name}.key"


def default_root_dir(pki_dir: Path) -> Path:
    """`pki/` -> `pki-root/`: beside the PKI, never inside it, so nothing that mounts or copies pki/ takes it."""
    pki_dir = Path(pki_dir)
    return pki_dir.parent / f"{pki_dir.name}-root"


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


def cert_pem(cert: x509.Certificate, *chain: x509.Certificate) -> bytes:
    """PEM of `cert` followed by its `chain` (the issuing CA for a leaf), the order TLS presents them in."""
    return b"".join(c.public_bytes(Encoding.PEM) for c in (cert, *chain))


def _write_pair(
    pki_dir: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    owner: Owner | None,
    pending_chowns: list[str],
    created: list[Path],
    chain: tuple[x509.Certificate, ...] = (),
) -> None:
    """Write key then cert (+ chain), recording each in `created` so the caller can roll back."""
    created.append(
        write_atomic(key_path(pki_dir, name), private_key_pem(key), KEY_MODE, owner=owner, pending_chowns=pending_chowns)
    )
    created.append(write_atomic(cert_path(pki_dir, name), cert_pem(cert, *chain), CERT_MODE))


def _rollback(created: list[Path]) -> None:
    for path in created:
        path.unlink(missing_ok=True)


def _require_dir(pki_dir: Path) -> Path:
    pki_dir = Path(pki_dir)
    if not pki_dir.is_dir():
        raise PKIError(f"PKI directory {pki_dir} does not exist; run `python -m tls init` first.")
    return pki_dir


def load_ca(pki_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The issuing CA, which signs leaves and their CRL."""
    pki_dir = _require_dir(pki_dir)
    if not cert_path(pki_dir, ISSUING).exists():
        if key_path(pki_dir, CA).exists():
            raise PKIError(f"{pki_dir}/ holds a single CA with its key (made before the offline root); create a new "
                           "PKI with `python -m tls init` in another directory and deploy it.")
        raise PKIError(f"{pki_dir}/ holds no issuing CA; run `python -m tls init` first.")
    return load_private_key(key_path(pki_dir, ISSUING)), load_certificate(cert_path(pki_dir, ISSUING))


def load_root(pki_dir: Path, root_dir: Path | None = None,
              passphrase: bytes | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The offline root: its certificate from pki/, its key from `root_dir`, opened with `passphrase` (else the
    root directory's passphrase file, else a prompt)."""
    root_dir = Path(root_dir) if root_dir is not None else default_root_dir(pki_dir)
    path = root_dir / ROOT_KEY
    if not path.exists():
        raise PKIError(f"{path} is not on this host; bring the offline root's key back (README: the offline root) "
                       "and give its directory with --root-dir.")
    key = load_private_key(path, passphrase if passphrase is not None else read_root_passphrase(root_dir))
    cert = load_certificate(cert_path(_require_dir(pki_dir), CA))
    if public_key_der(cert.public_key()) != public_key_der(key.public_key()):
        raise PKIError(f"{path} is not the key of {cert_path(pki_dir, CA)}; give the root of this PKI.")
    return key, cert


def read_root_passphrase(root_dir: Path) -> bytes:
    path = Path(root_dir) / PASSPHRASE
    if path.exists():
        return path.read_bytes().strip()
    if sys.stdin.isatty():
        return getpass.getpass(f"Passphrase of {Path(root_dir) / ROOT_KEY}: ").encode()
    raise PKIError(f"The root key's passphrase is needed: put it in {path} (mode 0600) for this command, "
                   "or run it from a terminal to be asked for it.")


def issuing_cas(pki_dir: Path) -> list[str]:
    """The issuing CAs whose certificates may be in service: the current one, and the previous one during the
    overlap a `rotate-issuing-ca` opens."""
    return [name for name in (ISSUING, PREVIOUS) if cert_path(pki_dir, name).exists()]


def issuer_name(pki_dir: Path, cert: x509.Certificate) -> str | None:
    """Which of the issuing CAs (ISSUING or PREVIOUS) signed `cert`, by subject (None: neither)."""
    for name in issuing_cas(pki_dir):
        if load_certificate(cert_path(pki_dir, name)).subject == cert.issuer:
            return name
    return None


def issuer_of(pki_dir: Path, cert: x509.Certificate) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The key and certificate of the issuing CA that signed `cert`: the one whose CRL must list it."""
    name = issuer_name(pki_dir, cert)
    if name is None:
        raise PKIError(f"Certificate {describe_certificate(cert)['subject_cn']!r} was issued by "
                       f"{cert.issuer.rfc4514_string()!r}, not by this PKI's issuing CA.")
    return load_private_key(key_path(pki_dir, name)), load_certificate(cert_path(pki_dir, name))


def leaf_names(pki_dir: Path) -> list[str]:
    """Names of issued leaf certificates, broker first."""
    names = sorted(p.stem for p in Path(pki_dir).glob("*.crt") if p.stem not in (CA, ISSUING, PREVIOUS))
    return sorted(names, key=lambda n: n != BROKER)


def issuing_ca_name(root_common_name: str) -> str:
    # A fresh name per issuing CA: its CRL file is named after its subject, so a successor never overwrites it.
    return f"{root_common_name[:32]} Issuing {datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


def bootstrap_pki(
    pki_dir: Path,
    broker_host: str,
    client_roles: list[str],
    owners: dict[str, Owner] | None = None,
    ca_common_name: str = DEFAULT_CA_NAME,
    root_dir: Path | None = None,
    root_passphrase: bytes | None = None,
    servers: list[str] | tuple[str, ...] = (),
) -> list[Path]:
    """Create the root, the issuing CA, the broker and client pairs and both CRLs; all-or-nothing.

    `servers`: the project's other TLS services by host name (the result store), each a certificate named after its
    host; the issuing CA's name constraints permit their names as well as the broker's.

    The root's key goes to `root_dir` (default `<pki>-root/`), encrypted with `root_passphrase`; without one a
    random passphrase is generated and written beside it, for the operator to move to a password manager."""
    pki_dir = Path(pki_dir)
    root_dir = Path(root_dir) if root_dir is not None else default_root_dir(pki_dir)
    owners = dict(owners or {})
    # Validate everything before the first byte hits the disk.
    check_ca_name(ca_common_name)
    broker_host = check_host(broker_host)
    roles = [check_client_role(r) for r in client_roles]
    if len({r.lower() for r in roles}) != len(roles):
        raise PKIError(f"Client roles {roles} contain a duplicate; each role needs its own certificate.")
    servers = [check_client_role(check_host(host)) for host in servers]     # a host name, and a file name
    clashes = sorted({host.lower() for host in servers} & {name.lower() for name in (broker_host, BROKER, CA, ISSUING,
                                                                                    PREVIOUS, *roles)})
    if clashes or len({host.lower() for host in servers}) != len(servers):
        raise PKIError(f"Server host {', '.join(clashes) or 'names'} {servers} must differ from each other, from the "
                       "broker's host and from every client role: each names its own certificate.")
    if root_passphrase is not None and len(root_passphrase) < 12:
        raise PKIError("The root passphrase is shorter than 12 characters; choose a longer one.")
    names = [ISSUING, BROKER, *servers, *roles]
    unknown = sorted(set(owners) - set(names))
    if unknown:
        raise PKIError(f"Owner given for unknown name(s) {', '.join(unknown)}; known names are: {', '.join(names)}.")
    for owner in owners.values():
        check_owner(owner)
    if any(p.exists() for p in (cert_path(pki_dir, CA), key_path(pki_dir, CA), cert_path(pki_dir, ISSUING))):
        raise PKIError(
            f"{pki_dir}/ already holds a CA; use `python -m tls rotate NAME` to re-issue a certificate, "
            "or move the directory aside to start over."
        )
    existing = [p for n in names for p in (cert_path(pki_dir, n), key_path(pki_dir, n)) if p.exists()]
    existing += [p for p in (root_dir / ROOT_KEY, root_dir / PASSPHRASE) if p.exists()]
    if existing:
        raise PKIError(f"{existing[0]} already exists; move it aside before running init.")

    root_key, root_cert = create_root_ca(ca_common_name)
    broker_names = server_alt_names(broker_host)
    server_names = {host: server_alt_names(host) for host in servers}
    permitted = _union([broker_names, *server_names.values()])
    ca_key, ca_cert = create_issuing_ca(root_key, root_cert, issuing_ca_name(ca_common_name), *permitted)
    leaves = [(BROKER, *issue_server_certificate(ca_key, ca_cert, broker_host, *broker_names))]
    leaves += [(host, *issue_server_certificate(ca_key, ca_cert, host, *names)) for host, names in server_names.items()]
    leaves += [(role, *issue_client_certificate(ca_key, ca_cert, role)) for role in roles]
    generated = root_passphrase is None
    passphrase = secrets.token_urlsafe(32).encode() if root_passphrase is None else root_passphrase

    pki_dir.mkdir(parents=True, exist_ok=True)
    root_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    created: list[Path] = []
    pending: list[str] = []
    try:
        created.append(write_atomic(root_dir / ROOT_KEY, private_key_pem(root_key, passphrase), KEY_MODE))
        if generated:
            created.append(write_atomic(root_dir / PASSPHRASE, passphrase + b"\n", KEY_MODE))
        created.append(write_atomic(cert_path(pki_dir, CA), cert_pem(root_cert), CERT_MODE))
        _write_pair(pki_dir, ISSUING, ca_key, ca_cert, owners.get(ISSUING), pending, created)
        for name, key, cert in leaves:
            _write_pair(pki_dir, name, key, cert, owners.get(name), pending, created, chain=(ca_cert,))
        # Empty CRLs from the start: the broker checks the whole chain and refuses a certificate whose issuer has
        # no CRL it can read.
        created.append(write_crl(pki_dir, root_key, root_cert, []))
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
    return _write_new_pair(Path(pki_dir), role, key, cert, owner, ca_cert)


def add_server(pki_dir: Path, host: str, valid_days: int = SERVER_DAYS, owner: Owner | None = None) -> list[Path]:
    """Issue the broker certificate (host, localhost, 127.0.0.1) with the existing CA."""
    host = check_host(host)
    owner = check_owner(owner)
    ca_key, ca_cert = load_ca(pki_dir)
    if cert_path(pki_dir, BROKER).exists():
        raise PKIError(f"{cert_path(pki_dir, BROKER)} already exists; use `python -m tls rotate broker` to re-issue it.")
    key, cert = issue_server_certificate(ca_key, ca_cert, host, *server_alt_names(host), valid_days=valid_days)
    return _write_new_pair(Path(pki_dir), BROKER, key, cert, owner, ca_cert)


def add_local_server(pki_dir: Path, name: str, valid_days: int = SERVER_DAYS, owner: Owner | None = None) -> list[Path]:
    """Issue a server certificate `name` for a service reached on this host only (localhost, 127.0.0.1: a
    dashboard behind its loopback port). It cannot stand in for the broker, whose clients check the broker's name."""
    name = check_client_role(name)          # a file name and common name, as for a client
    owner = check_owner(owner)
    ca_key, ca_cert = load_ca(pki_dir)
    if name in (BROKER, CA, ISSUING, PREVIOUS) or cert_path(pki_dir, name).exists():
        raise PKIError(f"{cert_path(pki_dir, name)} already exists or is reserved; use `python -m tls rotate {name}` "
                       "to re-issue an existing certificate.")
    key, cert = issue_server_certificate(ca_key, ca_cert, name, list(LOCAL_DNS_NAMES), list(LOCAL_IP_ADDRESSES),
                                         valid_days=valid_days)
    return _write_new_pair(Path(pki_dir), name, key, cert, owner, ca_cert)


def _write_new_pair(pki_dir: Path, name: str, key, cert, owner: Owner | None, ca_cert: x509.Certificate) -> list[Path]:
    created: list[Path] = []
    pending: list[str] = []
    try:
        _write_pair(pki_dir, name, key, cert, owner, pending, created, chain=(ca_cert,))
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
            "Rotating the root invalidates every certificate under it; move the PKI directory aside, "
            "run `python -m tls init` again and redeploy all certificates."
        )
    if name in (ISSUING, PREVIOUS):
        raise PKIError("The issuing CA is rotated with the root's help: `python -m tls rotate-issuing-ca`.")
    known = leaf_names(pki_dir)
    if name not in known:
        raise PKIError(f"Unknown certificate {name!r}; known names are: {', '.join(known) or 'none'}.")
    ca_key, ca_cert = load_ca(pki_dir)
    old_cert_path, old_key_path = cert_path(pki_dir, name), key_path(pki_dir, name)
    old = load_certificate(old_cert_path)
    key, cert = _reissue(ca_key, ca_cert, old, old_cert_path, valid_days)

    owner = check_owner((owners or {}).get(name))

    # Signed before anything is written: an unusable CRL stops the rotation while the PKI is still as it was. The
    # old certificate goes on its own issuer's list (the previous issuing CA's, during an overlap).
    old_issuer_key, old_issuer = issuer_of(pki_dir, old)
    crl = _crl_adding(pki_dir, old_issuer_key, old_issuer, [old])
    archive_dir = _archive(pki_dir, [old_cert_path, old_key_path], keep=True)
    chown_required = None
    try:
        # In place (same inode, owner, mode and ACL: whoever could read the old key reads the new one).
        written = [write_in_place(old_key_path, private_key_pem(key)),
                   write_in_place(old_cert_path, cert_pem(cert, ca_cert))]
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
    written_crl = _write_crl_file(pki_dir, old_issuer, crl)
    if chown_required is not None:
        raise chown_required
    return Rotation([*written, written_crl], archive_dir)


def _reissue(ca_key, ca_cert: x509.Certificate, old: x509.Certificate, path: Path, valid_days: int | None):
    """A new key and certificate with `old`'s subject, SANs and EKU (and its role's default lifetime)."""
    cn = describe_certificate(old)["subject_cn"]
    eku = eku_names(old)
    if "serverAuth" in eku:
        days = SERVER_DAYS if valid_days is None else valid_days
        return issue_server_certificate(ca_key, ca_cert, cn, *alt_names(old), valid_days=days)
    if "clientAuth" in eku:
        days = CLIENT_DAYS if valid_days is None else valid_days
        return issue_client_certificate(ca_key, ca_cert, cn, valid_days=days)
    raise PKIError(f"{path} is neither a server nor a client certificate; re-issue it by hand.")


def _union(names: list[tuple[list[str], list[str]]]) -> tuple[list[str], list[str]]:
    """(dns names, ip addresses) of several certificates together, each once, in order of appearance."""
    dns = list(dict.fromkeys(name for entry in names for name in entry[0]))
    ips = list(dict.fromkeys(address for entry in names for address in entry[1]))
    return dns, ips


def _new_issuing_ca(pki_dir: Path, root_key: ec.EllipticCurvePrivateKey):
    """A new issuing CA under the root, constrained to the names of the current server certificates (the broker's,
    and those of the project's other TLS services: the result store, the dashboards)."""
    root_cert = load_certificate(cert_path(pki_dir, CA))
    if BROKER not in leaf_names(pki_dir):
        raise PKIError(f"{pki_dir}/ holds no broker certificate; the issuing CA's name constraints come from it.")
    servers = [load_certificate(cert_path(pki_dir, name)) for name in leaf_names(pki_dir)]
    permitted = _union([alt_names(cert) for cert in servers if "serverAuth" in eku_names(cert)])
    root_name = describe_certificate(root_cert)["subject_cn"]
    return create_issuing_ca(root_key, root_cert, issuing_ca_name(root_name), *permitted)


def under_previous(pki_dir: Path) -> list[str]:
    """Leaves still signed by the previous issuing CA (re-issue each with `rotate` to finish an overlap); an
    unreadable one counts too (inspect shows it as such)."""
    waiting = []
    for name in leaf_names(pki_dir):
        try:
            if issuer_name(pki_dir, load_certificate(cert_path(pki_dir, name))) == PREVIOUS:
                waiting.append(name)
        except PKIError:
            waiting.append(name)
    return waiting


def _root_crl(pki_dir: Path, root_cert: x509.Certificate) -> x509.CertificateRevocationList:
    """The root's current CRL; a missing one is an error: starting a new one would forget every issuing CA the
    root revoked."""
    crl = load_crl(pki_dir, root_cert)
    if crl is None:
        raise PKIError(f"The root's revocation list {crl_path(pki_dir, root_cert)} is missing; restore it from your "
                       "backup of pki/crl/ first (a new one would forget every issuing CA the root revoked).")
    return crl


def rotate_issuing_ca(pki_dir: Path, root_key: ec.EllipticCurvePrivateKey) -> Replacement:
    """Planned rotation, without downtime: the root signs a new issuing CA, which signs from now on; the current
    one becomes the previous one and stays trusted (the root signed it, its CRL stays in crl/) until each leaf is
    re-issued with `rotate`, one by one, at each service's own pace. The next `rotate-issuing-ca` retires the
    previous CA (the root revokes it), and refuses to while a leaf still depends on it."""
    pki_dir = _require_dir(pki_dir)
    load_ca(pki_dir)
    waiting = under_previous(pki_dir)
    if waiting:
        raise PKIError(f"The previous issuing CA still signs {', '.join(waiting)}; re-issue each with `python -m "
                       "tls rotate NAME` first, then rotate the issuing CA again.")
    root_cert = load_certificate(cert_path(pki_dir, CA))
    ca_key, ca_cert = _new_issuing_ca(pki_dir, root_key)
    retired = load_certificate(cert_path(pki_dir, PREVIOUS)) if PREVIOUS in issuing_cas(pki_dir) else None
    written: list[Path] = []
    archive_dir = None
    if retired is not None:
        root_crl = crl_with(root_key, root_cert, _root_crl(pki_dir, root_cert), [retired])  # signed before any write
        archive_dir = _archive(pki_dir, [cert_path(pki_dir, PREVIOUS), key_path(pki_dir, PREVIOUS)])
        written.append(_write_crl_file(pki_dir, root_cert, root_crl))
        _retire_crl(pki_dir, retired, archive_dir)
    for suffix in (".key", ".crt"):     # the current CA becomes the previous one: its files renamed, not rewritten
        os.replace(pki_dir / f"{ISSUING}{suffix}", pki_dir / f"{PREVIOUS}{suffix}")
    created: list[Path] = []
    try:
        _write_pair(pki_dir, ISSUING, ca_key, ca_cert, None, [], created)
        created.append(_write_crl_file(pki_dir, ca_cert, crl_with(ca_key, ca_cert, None, [])))
    except BaseException:
        _rollback(created)
        for suffix in (".key", ".crt"):
            os.replace(pki_dir / f"{PREVIOUS}{suffix}", pki_dir / f"{ISSUING}{suffix}")
        raise
    return Replacement([*written, *created], archive_dir)


def _retire_crl(pki_dir: Path, ca_cert: x509.Certificate, archive_dir: Path) -> None:
    """A revoked issuing CA's own CRL: kept in the archive only (the root's CRL refuses everything it signed)."""
    path = crl_path(pki_dir, ca_cert)
    if path.exists():
        write_atomic(archive_dir / f"crl-{path.stem}.crl", path.read_bytes(), CRL_MODE)   # the hash: a safe name
        path.unlink()


def replace_issuing_ca(pki_dir: Path, root_key: ec.EllipticCurvePrivateKey) -> Replacement:
    """Recover from a lost or stolen issuing key: the root revokes the issuing CA and signs a new one, which
    re-issues every leaf (new keys, same names) in place, and starts an empty CRL. Copies of everything replaced go
    to archive/. The broker refuses the old chain from its next handshake on (`broker-boot reload-tls`), and each
    client must reconnect with its new pair: recovery, not a rotation without downtime."""
    pki_dir = _require_dir(pki_dir)
    load_ca(pki_dir)
    old_cas = [load_certificate(cert_path(pki_dir, name)) for name in issuing_cas(pki_dir)]
    root_cert = load_certificate(cert_path(pki_dir, CA))
    names = leaf_names(pki_dir)
    ca_key, ca_cert = _new_issuing_ca(pki_dir, root_key)
    leaves = {name: _reissue(ca_key, ca_cert, load_certificate(cert_path(pki_dir, name)), cert_path(pki_dir, name),
                             None) for name in names}
    # Everything signed before the first write: a failure leaves the PKI as it was. A previous issuing CA (during
    # an overlap) was on the same host: it goes too.
    root_crl = crl_with(root_key, root_cert, _root_crl(pki_dir, root_cert), old_cas)
    files = [p for name in (*issuing_cas(pki_dir), *names) for p in (cert_path(pki_dir, name), key_path(pki_dir, name))]
    archive_dir = _archive(pki_dir, files, keep=True)
    try:
        written = [write_in_place(key_path(pki_dir, ISSUING), private_key_pem(ca_key)),
                   write_in_place(cert_path(pki_dir, ISSUING), cert_pem(ca_cert))]
        for name, (key, cert) in leaves.items():
            written += [write_in_place(key_path(pki_dir, name), private_key_pem(key)),
                        write_in_place(cert_path(pki_dir, name), cert_pem(cert, ca_cert))]
        written.append(_write_crl_file(pki_dir, ca_cert, crl_with(ca_key, ca_cert, None, [])))
    except BaseException:
        crl_path(pki_dir, ca_cert).unlink(missing_ok=True)
        _restore(archive_dir, pki_dir)
        raise
    written.append(_write_crl_file(pki_dir, root_cert, root_crl))
    for old_ca in old_cas:
        _retire_crl(pki_dir, old_ca, archive_dir)
    for suffix in (".key", ".crt"):
        (pki_dir / f"{PREVIOUS}{suffix}").unlink(missing_ok=True)   # its copy is in the archive
    return Replacement(written, archive_dir)


def revoke(pki_dir: Path, name: str) -> Revocation:
    """Revoke the current certificate of client `name` (the broker refuses it from its next handshake on) and move
    its pair to archive/; `issue-client` gives the name a new one."""
    pki_dir = _require_dir(pki_dir)
    if name == CA:
        raise PKIError("The root cannot revoke itself; to retire it, move the PKI directory aside and run "
                       "`python -m tls init`.")
    if name in (ISSUING, PREVIOUS):
        raise PKIError("The root revokes the issuing CA as it replaces it: `python -m tls replace-issuing-ca`.")
    if name == BROKER:
        raise PKIError("Clients check the broker's certificate against the CA, not against a CRL: replace it with "
                       "`python -m tls rotate broker` instead.")
    known = [n for n in leaf_names(pki_dir) if n != BROKER]
    if name not in known:
        raise PKIError(f"Unknown certificate {name!r}; known names are: {', '.join(known) or 'none'}.")
    cert = load_certificate(cert_path(pki_dir, name))
    ca_key, ca_cert = issuer_of(pki_dir, cert)
    written = _write_crl_file(pki_dir, ca_cert, _crl_adding(pki_dir, ca_key, ca_cert, [cert]))
    return Revocation(written, _archive(pki_dir, [cert_path(pki_dir, name), key_path(pki_dir, name)]))


def write_crl(pki_dir: Path, ca_key, ca_cert: x509.Certificate, certificates: list[x509.Certificate]) -> Path:
    """Sign the CA's CRL anew with `certificates` added (none: the current list, or an empty one, re-signed)."""
    return _write_crl_file(pki_dir, ca_cert, _crl_adding(pki_dir, ca_key, ca_cert, certificates))


def rebuild_crl(pki_dir: Path) -> list[Path]:
    """Sign each issuing CA's CRL anew from what the PKI holds: the current CRL's entries if it is this CA's, plus
    every certificate of this CA under archive/ (each was replaced by `rotate` or retired by `revoke`). Mends a CRL
    that was lost or replaced without un-revoking anything archived. (The root's CRL needs the root: it is written
    by `init`, `rotate-issuing-ca` and `replace-issuing-ca` only.)"""
    pki_dir = _require_dir(pki_dir)
    load_ca(pki_dir)      # the clear error for a PKI without an issuing CA
    written = []
    for name in issuing_cas(pki_dir):
        ca_key, ca_cert = load_private_key(key_path(pki_dir, name)), load_certificate(cert_path(pki_dir, name))
        try:
            current = load_crl(pki_dir, ca_cert)
        except PKIError:
            current = None      # not this CA's, or not a CRL: replaced by one built from archive/
        crl = crl_with(ca_key, ca_cert, current, archived_certificates(pki_dir, ca_cert))
        written.append(_write_crl_file(pki_dir, ca_cert, crl))
    return written


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
    """(usable, one line per CA for `inspect`): the broker checks the whole chain and refuses every client while
    the root or the issuing CA has no CRL it can read."""
    pki_dir = _require_dir(pki_dir)
    results = [_check_one_crl(pki_dir, CA, "restore it from your backup of pki/crl/")]
    results += [_check_one_crl(pki_dir, name, "run `python -m tls crl`") for name in issuing_cas(pki_dir) or [ISSUING]]
    return all(ok for ok, _ in results), "\n".join(line for _, line in results)


def _check_one_crl(pki_dir: Path, name: str, hint: str) -> tuple[bool, str]:
    try:
        ca_cert = load_certificate(cert_path(pki_dir, name))
        crl = load_crl(pki_dir, ca_cert)
    except PKIError as exc:
        return False, f"crl ({name}): {exc}"
    path = crl_path(pki_dir, ca_cert)
    if crl is None:
        return False, f"crl ({name}): {path} is missing; the broker refuses every client until it is back: {hint}."
    if crl.next_update_utc is None or crl.next_update_utc <= datetime.now(timezone.utc):
        return False, f"crl ({name}): {path} lapsed on {crl.next_update_utc:%Y-%m-%d}; {hint}."
    return True, f"crl ({name}): {path}, {len(crl)} revoked, valid until {crl.next_update_utc:%Y-%m-%d}"


def check_pki(pki_dir: Path, warn_days: int = 30) -> list[dict]:
    """describe() of every certificate plus `status` (OK/EXPIRING/EXPIRED/REVOKED/UNREADABLE) and `chain` (each
    checked against its issuer: the root against itself, the issuing CA against the root, leaves against the
    issuing CA; revocation likewise against the issuer's CRL)."""
    pki_dir = _require_dir(pki_dir)
    rows = []
    for name in [CA, ISSUING, *issuing_cas(pki_dir)[1:], *leaf_names(pki_dir)]:
        path = cert_path(pki_dir, name)
        try:
            cert = load_certificate(path)
            issued_by = CA if name in (CA, ISSUING, PREVIOUS) else issuer_name(pki_dir, cert) or ISSUING
            issuer = load_certificate(cert_path(pki_dir, issued_by))
        except PKIError as exc:
            rows.append({"name": name, "path": str(path), "status": "UNREADABLE", "chain": str(exc)})
            continue
        row = {"name": name, "path": str(path), "issuer": issued_by, **describe_certificate(cert)}
        try:
            verify_chain(issuer, cert)  # for the root itself this checks its self-signature
            row["chain"] = "valid"
        except PKIError as exc:
            row["chain"] = str(exc)
        try:
            crl = load_crl(pki_dir, issuer)
        except PKIError:
            crl = None  # check_crl reports it
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


def root_key_on_host(pki_dir: Path, root_dir: Path | None = None) -> Path | None:
    """The root key's path if it is still beside the PKI (it belongs offline once the bake is done)."""
    path = (Path(root_dir) if root_dir is not None else default_root_dir(pki_dir)) / ROOT_KEY
    return path if path.exists() else None


def write_client_pair(pki_dir: Path, name: str, directory: Path, valid_days: int = CLIENT_DAYS,
                      not_valid_before: datetime | None = None, file_stem: str | None = None) -> x509.Certificate:
    """Issue a client certificate for `name` from the issuing CA into `directory` as `<file_stem or name>.key`
    (0600) and `.crt` (certificate + chain), outside the PKI's own files: for tests and one-off identities."""
    ca_key, ca_cert = load_ca(pki_dir)
    key, cert = issue_client_certificate(ca_key, ca_cert, name, valid_days, not_valid_before)
    stem = Path(directory) / (file_stem or name)
    write_atomic(stem.with_name(f"{stem.name}.key"), private_key_pem(key), KEY_MODE, overwrite=True)
    write_atomic(stem.with_name(f"{stem.name}.crt"), cert_pem(cert, ca_cert), CERT_MODE, overwrite=True)
    return cert
