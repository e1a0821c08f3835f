"""Per-vhost broker identities as RabbitMQ definitions; with `login = "password"`, their random passwords as files.

With certificate login (the default) users have no password at all: the broker takes the user name from the client
certificate (x509 EXTERNAL), and a user without a password hash cannot log in any other way.

With password login each identity has two broker users (topology.password_users) and rotates between them (CRED-08),
in two steps so that the credential its clients read always works: `rotate <identity>` gives the user not in use a
new password in the definitions (the broker learns it at `broker-boot reconcile`), and `activate <identity>` then
hands it to the identity's clients, whose next connection uses it; the password they had stays valid until the next
rotation retires it. secrets/<identity>.password holds the current user and password (mounted into the identity's
containers, read at every connection); .password.next the staged one and .password.previous the one before (host
only, for the broker's definitions)."""
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
DASHBOARD_USER = "operator"  # the dashboards' login name; the password is what is secret


class CredentialError(Exception):
    """A credential command that cannot be carried out as asked; nothing was changed."""


def rabbitmq_password_hash(password: str, salt: bytes | None = None) -> str:
    """base64(salt + sha256(salt + utf8(password))), the format RabbitMQ imports from definitions."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def password_path(secrets_dir: Path, identity: str) -> Path:
    """The identity's current credential, the file its containers mount."""
    return secrets_dir / f"{identity}.password"


def previous_path(secrets_dir: Path, identity: str) -> Path:
    """The credential the last rotation replaced: valid on the broker until the next rotation, mounted nowhere."""
    return secrets_dir / f"{identity}.password.previous"


def staged_path(secrets_dir: Path, identity: str) -> Path:
    """The credential `rotate` made and `activate` hands over: known to the broker first, mounted nowhere."""
    return secrets_dir / f"{identity}.password.next"


def credential_files(secrets_dir: Path, identity: str) -> tuple[Path, Path, Path]:
    """Every credential file an identity may have, oldest first: previous, current, staged."""
    return previous_path(secrets_dir, identity), password_path(secrets_dir, identity), staged_path(secrets_dir, identity)


def credential_text(user: str, password: str) -> str:
    """The credential file's content (read by src/<package>/password_login.py at every connection)."""
    return json.dumps({"user": user, "password": password}) + "\n"


def read_credential(path: Path) -> tuple[str, str]:
    """(user, password) of a credential file written by this module."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        return entry["user"], entry["password"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialError(f"{path} is not a credential file of this project ({exc}); "
                              "`python -m tools.credentials generate` writes a new one if you delete it") from None


def dashboard_login_path(secrets_dir: Path, dashboard: str) -> Path:
    """The operators' login of one Flower dashboard (MON-02), mounted into that dashboard alone."""
    return secrets_dir / f"{dashboard}.password"


def ensure_dashboard_logins(secrets_dir: Path, dashboards: Sequence[str]) -> None:
    """A random login for every dashboard that has none (user `operator`); existing ones are kept."""
    for dashboard in dashboards:
        path = dashboard_login_path(secrets_dir, dashboard)
        if not path.exists():
            write_private_file(path, credential_text(DASHBOARD_USER, secrets.token_urlsafe(PASSWORD_BYTES)))


def ensure_error_report_files(secrets_dir: Path) -> None:
    """The Sentry DSN and CA files (error_reports = sentry), empty until the operator fills them in: compose mounts
    them from the start, and an empty DSN sends nothing. Existing ones are kept."""
    for name in (settings.ERROR_REPORTS_DSN, settings.ERROR_REPORTS_CA):
        if not (secrets_dir / name).exists():
            write_private_file(secrets_dir / name, "")


def upgrade_legacy(path: Path, user: str) -> None:
    """A password file from before CRED-08 (the password alone, on one line) becomes the credential of the
    identity's first user, in place (its read grant stays)."""
    text = path.read_text(encoding="utf-8").strip()
    if text and not text.startswith("{") and "\n" not in text:
        write_private_file(path, credential_text(user, text))


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


def ensure_credentials(secrets_dir: Path, identities: Sequence[str], topology) -> dict[str, str]:
    """Make a credential for every identity that has none (its first broker user, a random password); existing
    ones are kept, never rotated here. Returns {broker user: password} of every user that has one."""
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    passwords = {}
    for identity in identities:
        current = password_path(secrets_dir, identity)
        if not current.exists():
            write_private_file(current, credential_text(topology.password_users(identity)[0],
                                                        secrets.token_urlsafe(PASSWORD_BYTES)))
        upgrade_legacy(current, topology.password_users(identity)[0])
        # Oldest first, so that a user's newest password wins: the staged one retires what its user had before.
        for path in credential_files(secrets_dir, identity):
            if path.exists():
                user, password = read_credential(path)
                passwords[user] = password
    return passwords


def build_definitions(vhosts: Sequence[str], passwords: dict[str, str] | None, topology,
                      overrides: dict[str, dict] | None = None, dashboard: bool = False) -> dict:
    """Vhosts, users, least-privilege permissions, limits and the queue topology of every vhost.

    `passwords` is None for certificate login: one user per identity, with an empty password hash, which no
    password matches. With password login, {broker user: password}: both users of each identity, hashed if known.
    `overrides` is for test stacks only ({vhost: {"queue_max_length": n, "max_connections": n}}): it lets a
    dedicated test vhost have small limits so floods are cheap to stage; `generate` never passes it.
    `dashboard`: each vhost also gets its monitor user and the event exchange, and its workers may send events.
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
        for role in topology.roles(dashboard):
            identity = topology.user_name(vhost, role)
            for name in topology.broker_users(identity, passwords is not None):
                # An empty hash matches no password: certificate login, and a password user not yet rotated to.
                password = (passwords or {}).get(name)
                definitions["users"].append({
                    "name": name, "password_hash": "" if password is None else rabbitmq_password_hash(password),
                    "hashing_algorithm": HASHING_ALGORITHM, "tags": [], "limits": dict(topology.USER_LIMITS[role]),
                })
                definitions["permissions"].append({"user": name, "vhost": vhost,
                                                   **topology.permissions(role, events=dashboard)})
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
        if dashboard:       # declared here as Celery declares it (a durable topic exchange), so clients' re-declares agree
            definitions["exchanges"].append({"name": topology.EVENT_EXCHANGE, "vhost": vhost, "type": "topic",
                                             "durable": True, "auto_delete": False, "internal": False,
                                             "arguments": {}})
        definitions["exchanges"].append({"name": topology.DEAD_LETTER_EXCHANGE, "vhost": vhost, "type": "fanout",
                                         "durable": True, "auto_delete": False, "internal": False,
                                         "arguments": {}})
        definitions["queues"].append({"name": topology.DEAD_LETTER_QUEUE, "vhost": vhost, "durable": True,
                                      "auto_delete": False, "arguments": topology.dead_letter_arguments()})
        definitions["bindings"].append({"source": topology.DEAD_LETTER_EXCHANGE, "vhost": vhost,
                                        "destination": topology.DEAD_LETTER_QUEUE, "destination_type": "queue",
                                        "routing_key": "", "arguments": {}})
    return definitions


def generate(project_dir: Path, secrets_dir: Path | None = None) -> Path:
    """Create missing passwords (password login only), (re)write definitions.json from stack.toml's vhosts, and let
    each container user read the files compose.yaml mounts for it. `secrets_dir`: a copy of secrets/ (test stacks)."""
    stack = settings.load(project_dir)
    secrets_dir = secrets_dir or stack.project_dir / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    passwords = ensure_credentials(secrets_dir, stack.identities, stack.topology) if stack.passwords else None
    ensure_dashboard_logins(secrets_dir, stack.dashboard_certificates)
    if stack.reports_errors:
        ensure_error_report_files(secrets_dir)
    if stack.result_store:
        from tools import result_store     # imports this module: loaded only where it is needed
        result_store.generate(stack, secrets_dir)
    definitions_path = secrets_dir / "definitions.json"
    write_private_file(definitions_path, json.dumps(build_definitions(stack.vhosts, passwords, stack.topology,
                                                                      dashboard=stack.dashboard), indent=2))
    file_access.grant_from_compose_file(stack.project_dir)
    return definitions_path


def other_user(users: tuple[str, str], current: str) -> str:
    """The user a rotation moves to: the one not in use (the two alternate)."""
    return users[1] if current == users[0] else users[0]


def identity_credential(project_dir: Path, identity: str, secrets_dir: Path | None) -> tuple[settings.StackSettings,
                                                                                               Path, Path]:
    """(stack, secrets dir, current credential file) of one identity of a password-login stack, or a clear error."""
    stack = settings.load(project_dir)
    if not stack.passwords:
        raise CredentialError("this stack logs in with certificates: there is no password to rotate (rotate the "
                              f"certificate instead: python -m tls rotate {identity})")
    if identity not in stack.identities:
        raise CredentialError(f"{identity!r} is not an identity of this stack: {', '.join(stack.identities)}")
    secrets_dir = secrets_dir or stack.project_dir / "secrets"
    current = password_path(secrets_dir, identity)
    if not current.exists():
        raise CredentialError(f"{current} does not exist: run `python -m tools.credentials generate` first")
    return stack, secrets_dir, current


def rotate(project_dir: Path, identity: str, secrets_dir: Path | None = None) -> tuple[str, str]:
    """Step 1: give `identity`'s user not in use a new password, in definitions.json and staged for `activate`; the
    current credential is untouched. Returns (the user staged, the user in use)."""
    stack, secrets_dir, current = identity_credential(project_dir, identity, secrets_dir)
    user, _ = read_credential(current)
    new_user = other_user(stack.topology.password_users(identity), user)
    write_private_file(staged_path(secrets_dir, identity),
                       credential_text(new_user, secrets.token_urlsafe(PASSWORD_BYTES)))
    generate(stack.project_dir, secrets_dir)
    return new_user, user


def activate(project_dir: Path, identity: str, secrets_dir: Path | None = None) -> tuple[str, str]:
    """Step 2, once the broker knows the staged password: it becomes the current credential (rewritten in place, so
    the mounted file changes under running clients) and the current one the previous, valid until the next
    rotation. Returns (the user now in use, the user before)."""
    _, secrets_dir, current = identity_credential(project_dir, identity, secrets_dir)
    staged = staged_path(secrets_dir, identity)
    if not staged.exists():
        raise CredentialError(f"nothing staged for {identity}: run `python -m tools.credentials rotate {identity}`, "
                              "then `broker-boot reconcile`, first")
    new_user, _ = read_credential(staged)
    user, _ = read_credential(current)
    staged_text, current_text = staged.read_text(encoding="utf-8"), current.read_text(encoding="utf-8")
    if staged_text != current_text:                 # not already handed over (a rerun after an interruption)
        write_private_file(previous_path(secrets_dir, identity), current_text)
        write_private_file(current, staged_text)
    # The definitions stay as `rotate` wrote them: the same users keep the same passwords, so no reconcile either.
    staged.unlink()
    return new_user, user


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.credentials", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["generate", "rotate", "activate"],
                        help="generate: create missing passwords (password login), rewrite definitions; "
                             "rotate: stage a new password for one identity; activate: hand it to its clients")
    parser.add_argument("identity", nargs="?", help="rotate, activate: the identity (<vhost>-<role>)")
    parser.add_argument("--project-dir", type=Path, default=settings.PROJECT_DIR)
    args = parser.parse_args(argv)
    if (args.command == "generate") != (args.identity is None):
        parser.error("rotate and activate take one identity (<vhost>-<role>); generate takes none")
    try:
        stack = settings.load(args.project_dir)
        if args.command == "generate":
            path = generate(args.project_dir)
            kept = f"passwords kept in {path.parent}, mode 0600" if stack.passwords else "certificate login: no passwords"
            print(f"wrote {path} ({kept})")
        elif args.command == "rotate":
            staged, in_use = rotate(args.project_dir, args.identity)
            print(f"{staged} has a new password in the definitions; {args.identity}'s clients still use {in_use}'s. "
                  "Next, with no restart:\n"
                  "  docker compose exec broker broker-boot reconcile\n"
                  f"  docker compose exec broker rabbitmqctl close_all_user_connections {staged} 'password rotated'\n"
                  f"  python -m tools.credentials activate {args.identity}")
        else:
            in_use, before = activate(args.project_dir, args.identity)
            print(f"{args.identity}'s clients use {in_use} from their next connection; {before}'s password stays "
                  "valid until the next rotation. To move them now: "
                  f"docker compose exec broker rabbitmqctl close_all_user_connections {before} 'password rotated'")
    except (settings.SettingsError, file_access.AccessError, CredentialError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
