"""Per-vhost broker identities as RabbitMQ definitions; with `login = "password"`, their random passwords as files.

With certificate login (the default) users have no password at all: the broker takes the user name from the client
certificate (x509 EXTERNAL), and a user without a password hash cannot log in any other way."""
import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from tools import file_access, settings

PASSWORD_BYTES = 32          # token_urlsafe(32) gives 43 characters
SALT_BYTES = 4               # RabbitMQ's rabbit_password_hashing_sha256 format uses a 4-byte salt
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


def rabbitmq_password_hash(password: str, salt: bytes | None = None) -> str:
    """base64(salt + sha256(salt + utf8(password))), the format RabbitMQ imports from definitions."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def password_path(secrets_dir: Path, user: str) -> Path:
    return secrets_dir / f"{user}.password"


def write_private_file(path: Path, content: str) -> None:
    """Write a 0600 file owned by whoever runs this (containers get read grants, file_access.py).

    A new file is written beside and renamed into place (atomic). An existing one is rewritten in place: compose
    bind-mounts a secret file by inode, so a renamed replacement would stay invisible to a running container, and
    `broker-boot reconcile` would re-import the definitions the broker started with."""
    if path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        return
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def ensure_passwords(secrets_dir: Path, vhosts, topology) -> dict[str, str]:
    """Make a password for every (vhost, role) that has none; existing ones are kept, never rotated here."""
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    passwords = {}
    for vhost in vhosts:
        for role in topology.ROLES:
            user = topology.user_name(vhost, role)
            path = password_path(secrets_dir, user)
            if not path.exists():
                write_private_file(path, secrets.token_urlsafe(PASSWORD_BYTES) + "\n")
            passwords[user] = path.read_text(encoding="utf-8").strip()
    return passwords


def build_definitions(vhosts: Sequence[str], passwords: dict[str, str] | None, topology,
                      overrides: dict[str, dict] | None = None) -> dict:
    """Vhosts, users, least-privilege permissions, limits and the queue topology of every vhost.

    `passwords` is None for certificate login: every user gets an empty password hash, which no password matches.
    `overrides` is for test stacks only ({vhost: {"queue_max_length": n, "max_connections": n}}): it lets a
    dedicated test vhost have small limits so floods are cheap to stage; `generate` never passes it.
    """
    definitions: dict[str, list] = {"users": [], "vhosts": [], "permissions": [], "topic_permissions": [], "parameters": [], "policies": [],
                   "queues": [], "exchanges": [], "bindings": []}
    for vhost in vhosts:
        limits = (overrides or {}).get(vhost, {})
        definitions["vhosts"].append({"name": vhost})
        definitions["parameters"].append({
            "vhost": vhost, "component": "vhost-limits", "name": "limits",
            "value": {"max-connections": limits.get("max_connections", topology.VHOST_MAX_CONNECTIONS),
                      "max-queues": topology.VHOST_MAX_QUEUES},
        })
        for role in topology.ROLES:
            name = topology.user_name(vhost, role)
            definitions["users"].append({
                "name": name, "password_hash": "" if passwords is None else rabbitmq_password_hash(passwords[name]),
                "hashing_algorithm": HASHING_ALGORITHM, "tags": [], "limits": dict(topology.USER_LIMITS[role]),
            })
            definitions["permissions"].append({"user": name, "vhost": vhost, **topology.permissions(role)})
            definitions["topic_permissions"] += [{"user": name, "vhost": vhost, **grant}
                                                 for grant in topology.topic_permissions(role)]
        for policy in topology.operator_policies():
            definitions["parameters"].append({
                "vhost": vhost, "component": "operator_policy", "name": policy["name"],
                "value": {"pattern": policy["pattern"], "apply-to": "queues", "priority": policy["priority"],
                          "definition": policy["definition"]},
            })
        for queue in topology.TASK_QUEUES:
            arguments = topology.queue_arguments(queue)
            if "queue_max_length" in limits:
                arguments["x-max-length"] = limits["queue_max_length"]
            definitions["queues"].append({"name": queue, "vhost": vhost, "durable": True, "auto_delete": False,
                                          "arguments": arguments})
        definitions["exchanges"].append({"name": topology.TASK_EXCHANGE, "vhost": vhost,
                                         "type": topology.TASK_EXCHANGE_TYPE,
                                         "durable": True, "auto_delete": False, "internal": False,
                                         "arguments": {}})
        definitions["bindings"] += [{"source": topology.TASK_EXCHANGE, "vhost": vhost, "destination": queue,
                                     "destination_type": "queue", "routing_key": queue, "arguments": {}}
                                    for queue in topology.TASK_QUEUES]
        definitions["exchanges"].append({"name": topology.DEAD_LETTER_EXCHANGE, "vhost": vhost, "type": "fanout",
                                         "durable": True, "auto_delete": False, "internal": False,
                                         "arguments": {}})
        definitions["queues"].append({"name": topology.DEAD_LETTER_QUEUE, "vhost": vhost, "durable": True,
                                      "auto_delete": False, "arguments": topology.dead_letter_arguments()})
        definitions["bindings"].append({"source": topology.DEAD_LETTER_EXCHANGE, "vhost": vhost,
                                        "destination": topology.DEAD_LETTER_QUEUE, "destination_type": "queue",
                                        "routing_key": "", "arguments": {}})
    return definitions


def generate(project_dir: Path) -> Path:
    """Create missing passwords (password login only), (re)write secrets/definitions.json from stack.toml's vhosts,
    and let each container user read the files compose.yaml mounts for it."""
    stack = settings.load(project_dir)
    secrets_dir = stack.project_dir / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    passwords = ensure_passwords(secrets_dir, stack.vhosts, stack.topology) if stack.passwords else None
    definitions_path = secrets_dir / "definitions.json"
    write_private_file(definitions_path, json.dumps(build_definitions(stack.vhosts, passwords, stack.topology),
                                                    indent=2))
    file_access.grant_from_compose_file(stack.project_dir)
    return definitions_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.credentials", description=__doc__)
    parser.add_argument("command", choices=["generate"], help="create missing passwords (password login), rewrite "
                                                              "definitions")
    parser.add_argument("--project-dir", type=Path, default=settings.PROJECT_DIR)
    args = parser.parse_args(argv)
    try:
        path = generate(args.project_dir)
    except (settings.SettingsError, file_access.AccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = f"passwords kept in {path.parent}, mode 0600" if settings.load(args.project_dir).passwords else \
        "certificate login: no passwords"
    print(f"wrote {path} ({kept})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
