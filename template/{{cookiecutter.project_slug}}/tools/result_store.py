"""The result store's users (result_backend = redis), written into secrets/ at bake time and after every tenant
change: the store's ACL file (password hashes only) and one credential file per user, which compose mounts into
that identity's containers alone.

One user per tenant and role, named like the identity's broker user (and presenting the same client certificate):
a worker stores its tenant's results, a producer reads them (and may write only a group's bookkeeping, which a chord
needs). Each is confined to its tenant's key prefix and to the commands Celery's Redis backend sends for its role;
the default user is off, so nobody reaches the store without a password, whatever certificate they hold (RES-02).
"""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from tools import credentials, settings

ACL_FILE = "results-users.acl"
# What Celery's Redis backend sends (celery/backends/redis.py, and its chord scripts' redis.call()s, which the
# store checks against the same rights): nothing administrative, nothing that reaches every key (KEYS, SCAN, FLUSH*).
WORKER_COMMANDS = (
    "auth", "hello", "ping", "client|setinfo", "client|setname",
    "get", "mget", "set", "setex", "del", "exists", "expire", "incr", "publish", "multi", "exec", "discard",
    # chords: the header results joined under the group's keys, by two Lua scripts (EVALSHA, loaded on first use)
    "evalsha", "script|load", "sismember", "sadd", "zadd", "zcount", "zrange", "rpush", "llen", "lrange",
)
PRODUCER_COMMANDS = (
    "auth", "hello", "ping", "client|setinfo", "client|setname",
    "get", "mget", "set", "del", "subscribe", "unsubscribe",
    "pttl",     # when a result expires (RES-03 reads it; Celery does not need it)
)


def key_rights(prefix: str, role: str) -> str:
    """A worker reads and writes its tenant's keys and channels; a producer only reads task results (it cannot
    forge one) and writes group bookkeeping (a chord's size, a saved GroupResult)."""
    if role == "worker":
        return f"~{prefix}* &{prefix}*"
    return f"%R~{prefix}celery-task-meta-* ~{prefix}celery-taskset-meta-* &{prefix}celery-task-meta-*"


def commands(role: str) -> tuple[str, ...]:
    return WORKER_COMMANDS if role == "worker" else PRODUCER_COMMANDS


def acl_line(user: str, password: str, prefix: str, role: str) -> str:
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    allowed = " ".join(f"+{command}" for command in commands(role))
    return f"user {user} on #{digest} resetkeys resetchannels {key_rights(prefix, role)} -@all {allowed}"


def credential_path(secrets_dir: Path, identity: str) -> Path:
    """The identity's login to the result store (JSON {"user", "password"}), mounted into its containers."""
    return secrets_dir / f"results-{identity}.password"


def acl_text(stack: settings.StackSettings, passwords: dict[str, str]) -> str:
    # Redis reads no comments in an ACL file. Nobody logs in without a password: the default user is off, has none,
    # and may do nothing even if turned on.
    lines = ["user default off resetpass resetkeys resetchannels -@all"]
    for vhost in stack.vhosts:
        for role in stack.topology.RESULT_STORE_ROLES:
            user = stack.topology.user_name(vhost, role)
            lines.append(acl_line(user, passwords[user], stack.topology.result_key_prefix(vhost), role))
    return "\n".join(lines) + "\n"


def generate(stack: settings.StackSettings, secrets_dir: Path) -> None:
    """A random password for every user that has none (existing ones kept), then the ACL file from stack.toml."""
    passwords = {}
    for identity in stack.result_store_identities:
        path = credential_path(secrets_dir, identity)
        if not path.exists():
            credentials.write_private_file(path, credentials.credential_text(
                identity, secrets.token_urlsafe(credentials.PASSWORD_BYTES)))
        user, passwords[identity] = credentials.read_credential(path)
        if user != identity:
            raise credentials.CredentialError(f"{path} is for user {user!r}, not {identity!r}; delete it and run "
                                              "`python -m tools.credentials generate` for a new one")
    credentials.write_private_file(secrets_dir / ACL_FILE, acl_text(stack, passwords))
