"""Let each container user read exactly the secret files compose.yaml mounts into its service.

Keys, passwords and definitions stay owned by whoever baked the project, mode 0600, so host-side tools keep
working without root. Compose bind-mounts secret files as they are on the host (it ignores a secret's
uid/gid/mode outside Swarm), so the container's user needs its own read grant: a POSIX ACL entry
(`user:<uid>:r--`) on each file, derived from compose.yaml (which service runs as which uid and mounts which
secret). Nobody else gains access. Docker Desktop (macOS, Windows) shares files without host permissions, so
nothing is needed there.
"""
from __future__ import annotations

import os
import re
import platform
import struct
from pathlib import Path

import yaml

ACL_XATTR = "system.posix_acl_access"
# Linux's xattr encoding of a POSIX ACL (acl_ea_header/acl_ea_entry): version 2, then (tag, perm, id) entries
# sorted by tag and id.
ACL_VERSION = 2
USER_OBJ, USER, GROUP_OBJ, MASK, OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
READ, WRITE, EXECUTE = 4, 2, 1
UNDEFINED_ID = 0xFFFFFFFF


class AccessError(OSError):
    """A container user cannot be given read access to a secret file; the message says what to do."""


def acl_blob(owner_permissions: int, users: set[int], permissions: int = READ) -> bytes:
    entries = [(USER_OBJ, owner_permissions, UNDEFINED_ID)]
    entries += [(USER, permissions, uid) for uid in sorted(users)]
    entries += [(GROUP_OBJ, 0, UNDEFINED_ID), (MASK, permissions if users else 0, UNDEFINED_ID), (OTHER, 0, UNDEFINED_ID)]
    return struct.pack("<I", ACL_VERSION) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def read_grants(path: Path) -> set[int]:
    """The uids holding a named-user ACL entry on `path` (empty without an ACL)."""
    try:
        blob = os.getxattr(path, ACL_XATTR)
    except OSError:
        return set()
    return {uid for tag, _, uid in struct.iter_unpack("<HHI", blob[4:]) if tag == USER}


def grant_read(path: Path, uids: set[int]) -> None:
    """The owner keeps its rights, each uid in `uids` may read, group and others nothing (replaces any old ACL)."""
    grant(path, uids, READ)


def grant(path: Path, uids: set[int], permissions: int) -> None:
    """As grant_read, with `permissions` (READ, WRITE, EXECUTE bits) for each uid: e.g. a directory a container
    user must write into."""
    status = path.stat()
    readers = {uid for uid in uids if uid != status.st_uid}
    try:
        os.setxattr(path, ACL_XATTR, acl_blob((status.st_mode >> 6) & 0o7, readers, permissions))
    except OSError as exc:
        if os.geteuid() == 0 and len(readers) == 1:      # no ACLs on this filesystem: root can hand it over
            os.chown(path, next(iter(readers)), -1)
            os.chmod(path, 0o400)
            return
        raise AccessError(exc.errno, f"cannot let uid(s) {sorted(readers)} read {path}: {exc.strerror}; use a "
                                     "filesystem with POSIX ACLs (ext4, xfs, btrfs) or bake as root") from None


def with_defaults(value: str) -> str:
    """`${NAME:-default}` in a path of compose.yaml as parsed, resolved as compose does (the variable if set and not
    empty, else the default); `compose config` output has none left."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda match: os.environ.get(match[1]) or match[2], value)


def secret_readers(compose: dict, project_dir: Path) -> dict[Path, set[int]]:
    """{secret file: uids that mount it}, from a compose model (compose.yaml as parsed, or `compose config`)."""
    files = {name: (project_dir / with_defaults(spec["file"])).resolve()
             for name, spec in (compose.get("secrets") or {}).items() if "file" in spec}
    readers: dict[Path, set[int]] = {path: set() for path in files.values()}
    for name, service in (compose.get("services") or {}).items():
        mounted = [entry if isinstance(entry, str) else entry["source"] for entry in service.get("secrets") or []]
        if not mounted:
            continue
        user = str(service.get("user") or "")
        if not user.split(":")[0].isdigit():
            raise AccessError(0, f"service {name} mounts secrets but has no numeric `user:`; compose.yaml must say "
                                 "which uid reads them")
        for source in mounted:
            if source in files:
                readers[files[source]].add(int(user.split(":")[0]))
    return readers


def host_uid(container_uid: int, rootless: bool) -> int:
    """The host uid a container uid runs as: itself, or under a rootless engine the user's subordinate uid."""
    if not rootless:
        return container_uid
    if container_uid == 0:
        return os.getuid()
    import pwd
    user = pwd.getpwuid(os.getuid()).pw_name
    for line in Path("/etc/subuid").read_text().splitlines():
        name, start, count = line.strip().split(":")
        if name in (user, str(os.getuid())) and container_uid <= int(count):
            return int(start) + container_uid - 1
    raise AccessError(0, f"no /etc/subuid range for {user} covers container uid {container_uid}")


def grant_container_access(compose: dict, project_dir: Path, rootless: bool = False) -> dict[Path, set[int]]:
    """Give every secret file exactly the read grants its services need; returns {file: host uids}."""
    if platform.system() != "Linux":
        return {}       # Docker Desktop: the VM's file sharing reads files as the host user
    granted = {}
    for path, uids in secret_readers(compose, project_dir).items():
        if path.exists() and not path.stat().st_mode & 0o004:    # certificates are public: nothing to grant
            granted[path] = {host_uid(uid, rootless) for uid in uids}
            grant_read(path, granted[path])
    return granted


def grant_from_compose_file(project_dir: Path) -> dict[Path, set[int]]:
    """As grant_container_access, reading compose.yaml itself (right after a bake, or after new credentials)."""
    compose = yaml.safe_load((project_dir / "compose.yaml").read_text(encoding="utf-8"))
    return grant_container_access(compose, project_dir)
