"""Tenants: stack.toml's `[workers] vhosts` is the one list; compose.yaml's tenant parts are generated from it.

Each tenant (vhost) has a worker service, a one-off producer service, a data volume, and the certificate, key and
password secrets of its identities. Those parts of compose.yaml sit between `# >>> tenant ...` and
`# <<< tenant ...` markers and are written here, at bake time and after every change:

    python -m tools.tenants add <vhost> [--priority]  # a new tenant, end to end (then run the steps it prints)
    python -m tools.tenants remove <vhost>            # its certificates revoked, its secrets deleted
    python -m tools.tenants sync                      # compose.yaml rewritten from stack.toml
    python -m tools.tenants check                     # exit 1 if compose.yaml and stack.toml disagree
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tools import credentials, file_access, names, result_store, settings

REGIONS = ("services", "volumes", "secrets")
GENERATED = "generated from stack.toml by `python -m tools.tenants sync`; edit stack.toml, not this block"
MARKERS = {region: (f"# >>> tenant {region}: {GENERATED}", f"# <<< tenant {region}") for region in REGIONS}


class TenantError(ValueError):
    """The change cannot be made; the message says why and what to do. Nothing was written."""


# --------------------------------------------------------------------------------------------- compose.yaml
def render_services(stack: settings.StackSettings, vhost: str) -> str:
    uid, gid = stack.worker_uid, stack.worker_gid

    def url(role: str) -> str:
        return f"amqps://{stack.topology.user_name(vhost, role)}@{stack.broker_host}:5671/{vhost}"

    egress = ("    networks: [backend, egress]            # worker_egress = allowed: tasks may call services outside "
              "the stack\n") if stack.worker_egress == "allowed" else ""

    def secrets(role: str) -> str:
        key = secret_key(vhost, role)
        return (f"    secrets:\n      - source: ca_cert\n        target: ca.crt\n"
                f"      - source: {key}_cert\n        target: client.crt\n"
                f"      - source: {key}_key\n        target: client.key\n"
                + (f"      - source: {key}_password\n        target: broker_password\n" if stack.passwords else "")
                + (f"      - source: {key}_results_password\n        target: results_password\n"
                   if stack.result_store and role in stack.topology.RESULT_STORE_ROLES else ""))

    def depends_on() -> str:
        """The broker, and the result store where there is one: both healthy before a client starts."""
        return ("    depends_on:\n      broker:\n        condition: service_healthy\n"
                + (f"      {stack.results_host}:\n        condition: service_healthy\n" if stack.result_store else ""))

    def result_store_url(role: str) -> str:
        return (f"      TASKS_RESULT_STORE_URL: rediss://{stack.topology.user_name(vhost, role)}@{stack.results_host}:6379/0\n"
                if stack.result_store else "")

    return (
        f"\n  {stack.worker_service(vhost)}:\n"
        f"    <<: *hardened\n"
        f"    image: {stack.images.worker}\n"
        f"    user: \"{uid}:{gid}\"\n"
        f"{depends_on()}"
        f"{egress}"
        f"    environment:\n"
        f"      TASKS_BROKER_URL: {url('worker')}\n"
        f"{result_store_url('worker')}"
        f"      # The queues whose tasks this tenant runs (TEN-03, allowlist.py); any other task is dead-lettered, never run.\n"
        f"      TASKS_ALLOWED_QUEUES: \"{','.join(stack.tenant_queues(vhost))}\"\n"
        + ("      TASKS_SEND_EVENTS: \"true\"       # for its dashboard (MON-02): task events, JSON, read by its monitor\n"
           if stack.dashboard else "")
        + ("      TASKS_ERROR_REPORTS_DSN_FILE: /run/secrets/error_reports_dsn   # failed tasks to Sentry (LOG-03)\n"
           "      TASKS_ERROR_REPORTS_CA_FILE: /run/secrets/error_reports_ca\n" if stack.reports_errors else "")
        + f"    tmpfs:\n      - /tmp:size=64m,uid={uid},gid={gid},mode=0700\n"
        f"    volumes:\n      - data-{vhost}:/data\n"
        f"{secrets('worker')}"
        + ("      - error_reports_dsn\n      - error_reports_ca\n" if stack.reports_errors else "")
        + f"    mem_limit: 512m\n    pids_limit: 256\n    cpus: 1.0\n"
        f"\n  {stack.producer_service(vhost)}:\n"
        f"    # One-off client for the demo and for operators: `docker compose run --rm {stack.producer_service(vhost)}`.\n"
        f"    <<: *hardened\n"
        f"    restart: \"no\"\n"
        f"    profiles: [tools]\n"
        f"    image: {stack.images.worker}\n"
        f"    user: \"{uid}:{gid}\"\n"
        f"{depends_on()}"
        f"    environment:\n"
        f"      TASKS_BROKER_URL: {url('producer')}\n"
        f"{result_store_url('producer')}"
        f"    command: [\"python3\", \"-m\", \"{stack.package}.demo\"]\n"
        f"    healthcheck:\n      disable: true\n"
        f"    tmpfs:\n      - /tmp:size=16m,uid={uid},gid={gid},mode=0700\n"
        f"{secrets('producer')}"
        f"    mem_limit: 256m\n    pids_limit: 64\n"
        + (render_dashboard(stack, vhost, url('monitor'), secrets('monitor')) if stack.dashboard else "")
    )


def render_dashboard(stack: settings.StackSettings, vhost: str, url: str, secrets: str) -> str:
    """The tenant's Flower (MON-02, MON-03): logged in to the broker as the vhost's monitor, serving HTTPS on a
    loopback port (`docker compose port <service> 5555` tells which)."""
    service, uid, gid = stack.dashboard_service(vhost), stack.worker_uid, stack.worker_gid
    return (
        f"\n  {service}:\n"
        f"    # Flower for this tenant, read-only, HTTPS with a login: https://localhost:<the port `docker compose port "
        f"{service} {settings.DASHBOARD_PORT}` prints>\n"
        f"    <<: *hardened\n"
        f"    image: {stack.images.dashboard}\n"
        f"    user: \"{uid}:{gid}\"\n"
        f"    depends_on:\n      broker:\n        condition: service_healthy\n"
        f"    # Only on `edge`, with the broker: never on `backend` with the workers (their tasks may run attacker-influenced\n"
        f"    # code), and `edge` is the only network a port can be published from (here on loopback only).\n"
        f"    networks: [edge]\n"
        f"    ports:\n      - \"127.0.0.1::{settings.DASHBOARD_PORT}\"\n"
        f"    environment:\n      TASKS_BROKER_URL: {url}\n"
        + ("      # It shows task events; results are not its business, and it has no login to the result store.\n"
           "      TASKS_RESULT_BACKEND: none\n" if stack.result_store else "")
        + f"    command: [\"python3\", \"-m\", \"{stack.package}.dashboard\"]\n"
        f"    healthcheck:\n      test: [\"CMD\", \"python3\", \"-m\", \"{stack.package}.dashboard\", \"check\"]\n"
        f"      interval: 10s\n      timeout: 5s\n      start_period: 20s\n      retries: 3\n"
        f"    tmpfs:\n      - /tmp:size=16m,uid={uid},gid={gid},mode=0700\n"
        f"{secrets}"
        f"      - source: {service}_cert\n        target: dashboard.crt\n"
        f"      - source: {service}_key\n        target: dashboard.key\n"
        f"      - source: {service}_login\n        target: dashboard_login\n"
        f"    mem_limit: 256m\n    pids_limit: 64\n    cpus: 0.5\n"
    )


# Where compose finds certificates and keys: pki/, or a copy of it under PKI_DIR (a test stack rotates and revokes
# there, never in the project's own).
PKI_FILES = "${PKI_DIR:-./pki}"
SECRET_FILES = "${PROJECT_SECRETS_DIR:-./secrets}"  # nosec B105 - a directory, not a secret: passwords rotate there


def secret_key(vhost: str, role: str) -> str:
    return f"{vhost}_{role}"


def render_secrets(stack: settings.StackSettings, vhost: str) -> str:
    lines = ["  # Each identity its own certificate (subject = its broker user) and key: nothing shared between tenants."]
    roles = ("worker", "producer", *([stack.topology.MONITOR_ROLE] if stack.dashboard else []))
    for role in roles:
        user = stack.topology.user_name(vhost, role)
        lines += [f"  {secret_key(vhost, role)}_cert:", f"    file: {PKI_FILES}/{user}.crt",
                  f"  {secret_key(vhost, role)}_key:", f"    file: {PKI_FILES}/{user}.key"]
    for role in roles if stack.passwords else ():
        lines += [f"  {secret_key(vhost, role)}_password:",
                  f"    file: {SECRET_FILES}/{stack.topology.user_name(vhost, role)}.password"]
    for role in stack.topology.RESULT_STORE_ROLES if stack.result_store else ():
        lines += [f"  {secret_key(vhost, role)}_results_password:",
                  f"    file: {SECRET_FILES}/"
                  f"{result_store.credential_path(Path(), stack.topology.user_name(vhost, role))}"]
    if stack.dashboard:
        service = stack.dashboard_service(vhost)
        lines += [f"  {service}_cert:", f"    file: {PKI_FILES}/{service}.crt",
                  f"  {service}_key:", f"    file: {PKI_FILES}/{service}.key",
                  f"  {service}_login:", f"    file: {SECRET_FILES}/{service}.password"]
    return "\n".join(lines) + "\n"


def render(stack: settings.StackSettings) -> dict[str, str]:
    """The text of each generated region of compose.yaml."""
    return {
        "services": "".join(render_services(stack, vhost) for vhost in stack.vhosts),
        "volumes": "".join(f"  data-{vhost}: " + "{}\n" for vhost in stack.vhosts),
        "secrets": "".join(render_secrets(stack, vhost) for vhost in stack.vhosts),
    }


def region_pattern(region: str) -> re.Pattern:
    start, end = MARKERS[region]
    return re.compile(rf"(^[ ]*{re.escape(start)}\n)(.*?)(^[ ]*{re.escape(end)}\n)", re.DOTALL | re.MULTILINE)


def regions(text: str, path: Path) -> dict[str, str]:
    found = {}
    for region in REGIONS:
        match = region_pattern(region).search(text)
        if match is None:
            raise TenantError(f"{path} has no `{MARKERS[region][0]}` ... `{MARKERS[region][1]}` block; restore the "
                              "markers from the template (the generated tenant parts go between them)")
        found[region] = match.group(2)
    return found


def compose_path(stack: settings.StackSettings) -> Path:
    return stack.project_dir / "compose.yaml"


def out_of_date(stack: settings.StackSettings) -> list[str]:
    """The regions of compose.yaml that differ from what stack.toml gives."""
    path = compose_path(stack)
    current, wanted = regions(path.read_text(encoding="utf-8"), path), render(stack)
    return [region for region in REGIONS if current[region] != wanted[region]]


def sync(project_dir: Path) -> list[str]:
    """Rewrite compose.yaml's tenant regions from stack.toml; the regions that changed."""
    stack = settings.load(project_dir)
    path, wanted = compose_path(stack), render(stack)
    text = path.read_text(encoding="utf-8")
    changed = [region for region in REGIONS if regions(text, path)[region] != wanted[region]]
    for region in changed:
        block = region_pattern(region).search(text)
        if block is None:                 # regions() above found every one: not reached
            raise TenantError(f"{path}: the tenant {region} block vanished while being rewritten")
        text = text[:block.start(2)] + wanted[region] + text[block.end(2):]
    if changed:
        path.write_text(text, encoding="utf-8")
    return changed


# --------------------------------------------------------------------------------------------- stack.toml
def set_toml_list(text: str, section: str, key: str, values: list[str], path: Path) -> str:
    """Replace the one-line `key = [...]` of `[section]` (comments and everything else untouched)."""
    header = re.search(rf"^\[{re.escape(section)}\][ \t]*$", text, re.MULTILINE)
    if header is None:
        raise TenantError(f"{path} has no [{section}] section")
    following = re.search(r"^\[", text[header.end():], re.MULTILINE)
    end = header.end() + following.start() if following else len(text)
    body = text[header.end():end]
    line = re.compile(rf"^{re.escape(key)}[ \t]*=[ \t]*\[[^\]\n]*\][ \t]*$", re.MULTILINE)
    rendered = f"{key} = [{', '.join(json.dumps(value) for value in values)}]"
    if line.search(body) is None:
        raise TenantError(f"{path}: [{section}] {key} must be a one-line list to be changed by this command")
    return text[:header.end()] + line.sub(lambda _: rendered, body, count=1) + text[end:]


def write_tenants(stack: settings.StackSettings, vhosts: list[str], priority_vhosts: list[str]) -> None:
    path = stack.project_dir / "stack.toml"
    text = set_toml_list(path.read_text(encoding="utf-8"), "workers", "vhosts", vhosts, path)
    text = set_toml_list(text, "workers", "priority_vhosts", priority_vhosts, path)
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------------- commands
def identities(stack: settings.StackSettings, vhost: str) -> list[str]:
    return [stack.topology.user_name(vhost, role) for role in stack.roles]


def add(project_dir: Path, vhost: str, priority: bool = False) -> list[str]:
    """Add a tenant: stack.toml, compose.yaml, its certificates, passwords and definitions. Next steps, as lines."""
    from tls import add_client, add_local_server   # the PKI tooling (cryptography) only where certificates are made

    stack = settings.load(project_dir)
    if vhost in stack.vhosts:
        raise TenantError(f"{vhost!r} is already a tenant (stack.toml [workers] vhosts).")
    problem = names.vhost_problem(vhost) or names.vhosts_problem([*stack.vhosts, vhost])
    if problem:
        raise TenantError(problem)
    pki = stack.project_dir / "pki"
    dashboards = [stack.dashboard_service(vhost)] if stack.dashboard else []
    existing = [name for name in [*identities(stack, vhost), *dashboards] if (pki / f"{name}.crt").exists()]
    if existing:
        raise TenantError(f"pki/ already holds a certificate for {', '.join(existing)}; revoke it first "
                          f"(`python -m tls revoke {existing[0]}`) or choose another name.")
    issued: list[Path] = []
    try:
        for identity in identities(stack, vhost):
            issued += add_client(pki, identity)
        if stack.dashboard:
            issued += add_local_server(pki, stack.dashboard_service(vhost))
    except Exception:
        for path in issued:            # all of the tenant's identities or none
            path.unlink(missing_ok=True)
        raise
    write_tenants(stack, [*stack.vhosts, vhost], [*stack.priority_vhosts, *([vhost] if priority else [])])
    sync(project_dir)
    credentials.generate(project_dir)
    services = [stack.worker_service(vhost), *([stack.dashboard_service(vhost)] if stack.dashboard else [])]
    return ["docker compose exec broker broker-boot reconcile   # the broker loads the new vhost, users and grants",
            *([f"docker compose restart {stack.results_host}   # the result store loads its new users (results "
               "persist)"] if stack.result_store else []),
            f"docker compose up -d --wait {' '.join(services)}   # its worker{' and dashboard' if stack.dashboard else ''}",
            f"docker compose run --rm {stack.producer_service(vhost)}   # a task through the new tenant"]


def remove(project_dir: Path, vhost: str) -> list[str]:
    """Remove a tenant: its certificates revoked, its passwords deleted, stack.toml and compose.yaml without it."""
    from tls import revoke

    stack = settings.load(project_dir)
    if vhost not in stack.vhosts:
        raise TenantError(f"{vhost!r} is not a tenant (stack.toml [workers] vhosts: {', '.join(stack.vhosts)}).")
    if len(stack.vhosts) == 1:
        raise TenantError(f"{vhost!r} is the only tenant; a stack needs at least one.")
    pki = stack.project_dir / "pki"
    dashboards = [stack.dashboard_service(vhost)] if stack.dashboard else []
    for identity in [*identities(stack, vhost), *dashboards]:
        if (pki / f"{identity}.crt").exists():
            revoke(pki, identity)       # its key stays useless wherever a copy went
    write_tenants(stack, [tenant for tenant in stack.vhosts if tenant != vhost],
                  [tenant for tenant in stack.priority_vhosts if tenant != vhost])
    sync(project_dir)
    for identity in identities(stack, vhost):
        for path in credentials.credential_files(stack.project_dir / "secrets", identity):
            path.unlink(missing_ok=True)
        result_store.credential_path(stack.project_dir / "secrets", identity).unlink(missing_ok=True)
    for dashboard in dashboards:
        credentials.dashboard_login_path(stack.project_dir / "secrets", dashboard).unlink(missing_ok=True)
    credentials.generate(project_dir)
    return [f"docker compose up -d --remove-orphans   # stops {stack.worker_service(vhost)}",
            "docker compose exec broker broker-boot reconcile   # deletes its users, closing their connections",
            *([f"docker compose restart {stack.results_host}   # the result store drops its users; its results "
               "expire"] if stack.result_store else []),
            f"# its vhost stays, with nobody allowed in; `docker compose exec broker rabbitmqctl delete_vhost {vhost}` "
            f"deletes its messages, `docker volume rm {stack.project}_data-{vhost}` its worker's data"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tenants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project-dir", type=Path, default=settings.PROJECT_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="add a tenant")
    adding.add_argument("vhost")
    adding.add_argument("--priority", action="store_true",
                        help="its worker also runs the priority queue's tasks (payments; stack.toml priority_vhosts)")
    commands.add_parser("remove", help="remove a tenant").add_argument("vhost")
    commands.add_parser("sync", help="rewrite compose.yaml's tenant parts from stack.toml")
    commands.add_parser("check", help="exit 1 if compose.yaml's tenant parts differ from stack.toml")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            stale = out_of_date(settings.load(args.project_dir))
            print(f"compose.yaml: tenant {', '.join(stale)} out of date; run `python -m tools.tenants sync`"
                  if stale else "compose.yaml agrees with stack.toml")
            return 1 if stale else 0
        if args.command == "sync":
            changed = sync(args.project_dir)
            print(f"compose.yaml: rewrote tenant {', '.join(changed)}" if changed else "compose.yaml: up to date")
            return 0
        steps = add(args.project_dir, args.vhost, args.priority) if args.command == "add" else \
            remove(args.project_dir, args.vhost)
    except (ValueError, file_access.AccessError, credentials.CredentialError) as exc:   # TenantError, SettingsError,
        # the PKI's PKIError, an unreadable credential file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'added' if args.command == 'add' else 'removed'} tenant {args.vhost}: stack.toml, compose.yaml, "
          "certificates, passwords and definitions updated. Next:")
    print("\n".join(f"  {step}" for step in steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
