"""Per-vhost credentials and definitions (CRED-01, CRED-02, CRED-03, CRED-04)."""
import base64
import hashlib
import json
import re
import stat
from pathlib import Path

import pytest

from tools import credentials, file_access, settings

pytestmark = pytest.mark.controls("CRED-01", "CRED-02", "CRED-03", "CRED-04")

PROJECT = Path(__file__).resolve().parents[2]


def test_password_hash_matches_rabbitmq_format():
    encoded = credentials.rabbitmq_password_hash("s3cret", salt=b"\x01\x02\x03\x04")
    raw = base64.b64decode(encoded)
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04" + b"s3cret").digest()


def test_baked_definitions_have_no_guest_and_one_identity_per_vhost_and_role():
    """One user per vhost and role; with password login, its two users (CRED-08), the second without a password
    until the first rotation."""
    stack = settings.load(PROJECT)
    definitions = json.loads((PROJECT / "secrets" / "definitions.json").read_text())
    names = {user["name"] for user in definitions["users"]}
    assert "guest" not in names
    vhosts = [vhost["name"] for vhost in definitions["vhosts"]]
    assert "/" not in vhosts
    identities = {f"{v}-{r}" for v in vhosts for r in stack.roles}     # + monitor with the dashboard
    assert names == (identities | {f"{identity}.b" for identity in identities} if stack.passwords else identities)
    for permission in definitions["permissions"]:
        assert permission["user"].startswith(permission["vhost"] + "-")


def test_baked_credentials_match_the_login():
    """Certificate login: no password files and no user with a password hash (only the certificate logs in).
    Password login: a password file per identity, and its hash in the definitions."""
    stack = settings.load(PROJECT)
    users = json.loads((PROJECT / "secrets" / "definitions.json").read_text())["users"]
    # (The dashboards' logins, flower = https, are no broker credentials.)
    # (Nor the result store's logins, result_backend = redis: tests/unit/test_result_store.py.)
    files = {path.stem for path in (PROJECT / "secrets").glob("*.password")} - set(stack.dashboard_certificates) - {
        f"results-{identity}" for identity in stack.result_store_identities}
    if stack.passwords:
        hashed = {user["name"] for user in users if user["password_hash"]}
        assert files == set(stack.identities) and hashed == set(stack.identities)
        passwords_are_long_random_and_private(sorted((PROJECT / "secrets").glob("*.password")))
    else:
        assert files == set() and [user["password_hash"] for user in users] == [""] * len(stack.identities)


def test_rotation_alternates_users_and_keeps_the_previous_password_until_the_next(tmp_path, monkeypatch):
    """CRED-08 on a copy of secrets/: each rotation moves the identity to its other user with a new password; the
    one it replaces stays in the definitions (hashed) until the next rotation, which retires it."""
    stack = settings.load(PROJECT)
    if not stack.passwords:
        with pytest.raises(credentials.CredentialError, match="there is no password to rotate"):
            credentials.rotate(PROJECT, stack.identities[0], tmp_path)
        return
    monkeypatch.setattr(file_access, "grant_from_compose_file", lambda project_dir: {})
    secrets_dir = tmp_path / "secrets"
    credentials.generate(PROJECT, secrets_dir)
    identity = stack.identities[0]
    first, second = stack.topology.password_users(identity)
    seen = [credentials.read_credential(credentials.password_path(secrets_dir, identity))]
    for expected in ((second, first), (first, second)):
        assert credentials.rotate(PROJECT, identity, secrets_dir) == expected
        # Staged: in the definitions already, not yet in the clients' file.
        assert credentials.read_credential(credentials.password_path(secrets_dir, identity)) == seen[-1]
        staged = credentials.read_credential(credentials.staged_path(secrets_dir, identity))
        assert hash_matches(hashes(secrets_dir)[staged[0]], staged[1])
        assert credentials.activate(PROJECT, identity, secrets_dir) == expected
        seen.append(credentials.read_credential(credentials.password_path(secrets_dir, identity)))
        assert seen[-1] == staged
        assert credentials.read_credential(credentials.previous_path(secrets_dir, identity)) == seen[-2]
        assert not credentials.staged_path(secrets_dir, identity).exists()
    users = hashes(secrets_dir)
    valid = {(user, password) for user, password in seen if hash_matches(users[user], password)}
    assert [user for user, _ in seen] == [first, second, first]
    assert valid == set(seen[1:]), "the two latest passwords log in, the baked one no longer"
    with pytest.raises(credentials.CredentialError, match="is not an identity of this stack"):
        credentials.rotate(PROJECT, "someone-else", secrets_dir)
    with pytest.raises(credentials.CredentialError, match="nothing staged"):
        credentials.activate(PROJECT, identity, secrets_dir)


def test_a_password_file_from_before_rotation_is_upgraded_in_place(tmp_path, monkeypatch):
    """A one-line password file (bakes before CRED-08) becomes the credential of the identity's first user."""
    stack = settings.load(PROJECT)
    if not stack.passwords:
        return
    monkeypatch.setattr(file_access, "grant_from_compose_file", lambda project_dir: {})
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    identity = stack.identities[0]
    credentials.password_path(secrets_dir, identity).write_text("an-old-43-character-password-" + "x" * 14 + "\n")
    credentials.generate(PROJECT, secrets_dir)
    assert credentials.read_credential(credentials.password_path(secrets_dir, identity)) == \
        (identity, "an-old-43-character-password-" + "x" * 14)


def hashes(secrets_dir: Path) -> dict[str, str]:
    return {user["name"]: user["password_hash"]
            for user in json.loads((secrets_dir / "definitions.json").read_text())["users"]}


def hash_matches(encoded: str, password: str) -> bool:
    raw = base64.b64decode(encoded) if encoded else b""
    return bool(raw) and credentials.rabbitmq_password_hash(password, salt=raw[:4]) == encoded


def passwords_are_long_random_and_private(files: list[Path]) -> None:
    passwords = [credentials.read_credential(path)[1] for path in files]
    assert len(set(passwords)) == len(passwords)
    assert all(len(password) >= 32 for password in passwords)
    uid = settings.load(PROJECT).worker_uid
    for path in files:
        # Nobody but the owner, except the one container user that mounts it (a POSIX ACL entry; the group
        # bits of an ACL'd file show its mask).
        readers = file_access.read_grants(path)
        assert readers == (set() if path.name.endswith("-auditor.password") else {uid}), path
        assert stat.S_IMODE(path.stat().st_mode) == (0o640 if readers else 0o600), path


def test_least_privilege_permissions():
    topology = settings.load(PROJECT).topology
    producer, worker, auditor = (topology.permissions(r) for r in ("producer", "worker", "auditor"))
    assert not re.match(producer["read"], "tasks") and not re.match(producer["configure"], "tasks")
    assert re.match(worker["read"], "tasks") and not re.match(worker["configure"], "tasks")
    assert worker["configure"] == "^$" and auditor["write"] == "^$"
    assert re.match(auditor["read"], "dead-letters") and not re.match(auditor["read"], "tasks")


def test_secrets_are_git_and_docker_ignored():
    gitignore = (PROJECT / ".gitignore").read_text()
    assert "/pki/" in gitignore and "/secrets/" in gitignore
    dockerignore = (PROJECT / ".dockerignore").read_text().splitlines()
    assert dockerignore[0 if dockerignore[0] == "*" else 2] == "*"
    assert not any(line.startswith("!") and ("pki" in line or "secrets" in line) for line in dockerignore)


def test_a_rewritten_secret_file_keeps_its_inode(tmp_path):
    """Compose mounts a secret file by inode: a file replaced by rename would not reach a running container."""
    path = tmp_path / "definitions.json"
    credentials.write_private_file(path, "{}")
    inode = path.stat().st_ino
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    credentials.write_private_file(path, '{"users": []}')
    assert path.stat().st_ino == inode and path.read_text() == '{"users": []}'
