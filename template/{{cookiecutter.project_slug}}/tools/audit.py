"""The audit trail: every refusal the stack made, as one JSON line each with a stable event name, read from the
containers' own logs: `python -m tools.audit [--tenant VHOST] [--since SECONDS]`.

The workers write their refusals already named (src/<package>/audit.py: serializer, header policy, allow-list,
malformed message, arguments). The broker writes RabbitMQ's own lines, which this names (BROKER_EVENTS): a TLS
handshake it refused, a login, a vhost or a permission. Exit status 0 either way: this reports, it does not judge.
"""
import argparse
import json
import re
import sys
import time
from collections.abc import Iterable

import docker

from tools import settings
from tools.compose import ComposeProject

TLS = "tls.refused"                  # a handshake refused: no, a foreign, an expired or a revoked certificate...
LOGIN = "login.refused"              # an unknown user, a wrong password or certificate login refused
VHOST = "vhost.refused"              # a user on a vhost it has no access to (another tenant's)
PERMISSION = "permission.refused"    # an operation outside the user's configure/write/read permissions

# (event, RabbitMQ's log line): the named groups become the event's fields.
BROKER_EVENTS = (
    (TLS, re.compile(r"TLS server: In state \w+ .*generated SERVER ALERT: Fatal - (?P<detail>.+)$")),
    # The user name is the client's choice with passwords: it may hold a newline, which cuts the line short.
    (LOGIN, re.compile(r"(?P<mechanism>\w+) login refused: user '(?P<user>[^']*)(?:' - (?P<detail>.+))?$")),
    (VHOST, re.compile(r"access to vhost '(?P<vhost>[^']*)' refused for user '(?P<user>[^']*)'")),
    (PERMISSION, re.compile(r"operation (?P<operation>[\w.]+) caused a channel exception access_refused: "
                            r"(?P<detail>.+ in vhost '(?P<vhost>[^']*)' refused for user '(?P<user>[^']*)')")),
)
BROKER_LINE = re.compile(r"^(?P<time>\S+ \S+) \[(?P<level>\w+)\] (?P<pid><[^>]*>) (?P<text>.*)$")
Line = tuple[str | None, str]       # (when Docker logged it, its text)


def broker_events(lines: Iterable[Line], stack: settings.StackSettings) -> list[dict]:
    found = []
    named = None      # the time and process of the message the last event came from
    for logged, text in lines:
        match = BROKER_LINE.match(text)
        if match is None:
            continue
        # RabbitMQ writes a message's time and process on each of its lines ("Error on AMQP connection ...", then the
        # refusal). One event per message: a later line of the same one may be the rest of a client-chosen user
        # name with a newline in it (password login), written to look like a refusal that blames someone else.
        header = (match["time"], match["pid"])
        if header == named:
            continue
        for event, pattern in BROKER_EVENTS:
            hit = pattern.search(match["text"])
            if hit is not None:
                fields = {key: value for key, value in hit.groupdict().items() if value is not None}
                found.append({"logged": logged, "time": match["time"], "event": event, "source": "broker",
                              "tenant": tenant_of_user(fields.get("user"), stack), **fields})
                named = header
                break
    return found


def tenant_of_user(user: str | None, stack: settings.StackSettings) -> str | None:
    """The tenant a broker user belongs to (its vhost), or None for a name that is nobody's."""
    for vhost in stack.vhosts:
        # Each identity's own name, and with password login its second user (topology.password_users).
        if any(user in stack.topology.password_users(stack.topology.user_name(vhost, role))
               for role in stack.roles):
            return vhost
    return None


def worker_events(lines: Iterable[Line], service: str) -> list[dict]:
    found = []
    for logged, text in lines:
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("event"), str):
            found.append({"logged": logged, "source": service, **entry})
    return found


def split_timestamps(raw: bytes) -> list[Line]:
    """Docker's `timestamps=True` output: each line prefixed with when the daemon logged it (RFC 3339, UTC), one
    clock for every container, so that events sort across services."""
    lines: list[Line] = []
    for line in raw.decode(errors="replace").splitlines():
        logged, _, text = line.partition(" ")
        lines.append((logged, text))
    return lines


def collect(project: ComposeProject, stack: settings.StackSettings, since: float | None = None) -> list[dict]:
    """Every refusal in the logs of the project's running containers (since the epoch time `since`), oldest first."""
    events = []
    for container in project.containers():
        service = container.labels.get("com.docker.compose.service", container.name)
        # A float: the daemon keeps its log timestamps to the nanosecond, so a window starts where it was asked to.
        raw = container.logs(stdout=True, stderr=True, timestamps=True, **({"since": float(since)} if since else {}))
        lines = split_timestamps(raw)
        events += broker_events(lines, stack) if service == "broker" else worker_events(lines, service)
    return sorted(events, key=lambda e: e["logged"] or "")


def concerns(event: dict, tenant: str) -> bool:
    """An event is a tenant's if one of its users did it or it was done to one of its vhosts."""
    return tenant in (event.get("tenant"), event.get("vhost"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.audit", description=__doc__.split("\n")[0])
    parser.add_argument("--tenant", metavar="VHOST", help="only the refusals of this tenant (its users or vhost)")
    parser.add_argument("--since", type=int, metavar="SECONDS", help="only the last SECONDS")
    args = parser.parse_args(argv)
    if args.since is not None and args.since <= 0:
        parser.error(f"--since {args.since} is invalid; give a number of seconds greater than 0")
    try:
        stack = settings.load()
        if args.tenant is not None and args.tenant not in stack.vhosts:
            print(f"error: {args.tenant!r} is not a tenant; the tenants are {', '.join(stack.vhosts)}", file=sys.stderr)
            return 2
        since = time.time() - args.since if args.since else None
        events = collect(ComposeProject(stack.project_dir, stack.project), stack, since)
    except (settings.SettingsError, docker.errors.DockerException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for event in events:
        if args.tenant is None or concerns(event, args.tenant):
            print(json.dumps(event, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
