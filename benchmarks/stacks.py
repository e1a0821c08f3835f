"""The stacks compared, each the broker and one worker of the baked project's own compose.yaml, started through
its test harness (tests/harness), always removed afterwards.

  hardened  the stack exactly as shipped: TLS with client certificates, JSON, validation, its settings.
  baseline  the same services and worker settings with the security controls off, through a compose override:
            the broker's rabbitmq.conf replaced to add a plaintext listener, a definitions file with one user (no
            guest) holding full rights on vhost `bench` (same queue topology), and the worker running
            benchmarks/baseline_app.py (BENCH_PROFILE=identical) mounted read-only into the image.
  default   as baseline, but the worker and client use stock Celery settings (BENCH_PROFILE=default).

Every variant runs with the images' healthchecks off (they would run a CLI inside the measured containers every
10 s; `healthcheck_cost` measures one check instead), and clients reach the broker at its container address, not
through the engine's userland proxy on a published port, whose CPU no measured container pays (the broker's
certificate name is still checked).
"""
import contextlib
import importlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pika
import yaml

BASELINE_APP = Path(__file__).with_name("baseline_app.py")
HARDENED_VHOST, HARDENED_ROLE = "billing", "producer"
PLAIN_VHOST, PLAIN_USER = "bench", "bench"


@dataclass(frozen=True)
class Variant:
    name: str
    profile: str | None          # None: the shipped app; else BENCH_PROFILE of baseline_app
    description: str


VARIANTS = {
    "default": Variant("default", "default", "stock Celery: plaintext, pickle, prefetch x4, early acks"),
    "baseline": Variant("baseline", "identical", "shipped worker settings, no security controls"),
    "hardened": Variant("hardened", None, "as shipped: TLS + client certs, JSON, validation"),
}


@dataclass
class Running:
    """What a client needs to reach a running stack."""

    variant: Variant
    project_dir: Path
    address: str                 # the broker container's address on its edge network
    port: int                    # its AMQP port there: 5671 (TLS), or 5672 (the baselines' plaintext listener)
    password: str | None
    container_ids: dict[str, str]

    def client_env(self) -> dict[str, str]:
        """Environment for benchmarks.workload: the project's own client settings, or baseline_app's."""
        if self.variant.profile:
            return {"BENCH_PROFILE": self.variant.profile,
                    "BENCH_BROKER_URL": f"amqp://{PLAIN_USER}:{self.password}@{self.address}:{self.port}/{PLAIN_VHOST}"}
        pki = self.project_dir / "pki"
        stack = importlib.import_module("tools.settings").load(self.project_dir)
        user = stack.topology.user_name(HARDENED_VHOST, HARDENED_ROLE)
        return {"TASKS_BROKER_URL": f"amqps://{user}@{self.address}:{self.port}/{HARDENED_VHOST}",
                "TLS_SERVER_NAME": stack.broker_host,
                "TASKS_BROKER_PASSWORD_FILE": str(self.project_dir / "secrets" / f"{user}.password"),
                "TLS_CA_FILE": str(pki / "ca.crt"), "TLS_CERT_FILE": str(pki / f"{user}.crt"),
                "TLS_KEY_FILE": str(pki / f"{user}.key")}

    def pika_parameters(self, role: str = HARDENED_ROLE) -> pika.ConnectionParameters:
        if self.variant.profile:
            return pika.ConnectionParameters(self.address, self.port, PLAIN_VHOST,
                                             pika.PlainCredentials(PLAIN_USER, self.password), connection_attempts=1)
        endpoint = importlib.import_module("tools.broker_client").Endpoint(self.project_dir, port=self.port,
                                                                           address=self.address)
        return endpoint.parameters(HARDENED_VHOST, role)


def baseline_override(project_dir: Path, stack, scratch, variant: Variant, password: str,
                      shipped_command: list[str]) -> Path:
    """A compose override of the shipped stack for the baseline variants: rabbitmq.conf with a plaintext listener
    (reached at the container address), definitions with one full-rights user on vhost `bench` (no guest, same
    queue topology), and the shipped worker service running baseline_app with the image's own worker flags
    (`identical`) or stock Celery's (`default`)."""
    credentials = importlib.import_module("tools.credentials")
    scratch_module = importlib.import_module("tests.harness.scratch")
    swaps = {"listeners.tcp = none": "listeners.tcp.default = 5672"}
    if stack.login == "certificate":      # the broker then offers EXTERNAL only; the baselines log in with a password
        swaps["auth_mechanisms.1 = EXTERNAL"] = ("auth_mechanisms.1 = EXTERNAL\nauth_mechanisms.2 = AMQPLAIN\n"
                                                 "auth_mechanisms.3 = PLAIN")
    config = scratch_module.broker_config_swapped(project_dir, swaps)
    definitions = credentials.build_definitions([PLAIN_VHOST], {stack.topology.user_name(PLAIN_VHOST, role): "unused"
                                                                for role in stack.topology.ROLES}, stack.topology)
    definitions["users"] = [{"name": PLAIN_USER, "password_hash": credentials.rabbitmq_password_hash(password),
                             "hashing_algorithm": credentials.HASHING_ALGORITHM, "tags": []}]
    definitions["permissions"] = [{"user": PLAIN_USER, "vhost": PLAIN_VHOST,
                                   "configure": ".*", "write": ".*", "read": ".*"}]
    # The per-role users are gone, and with them their topic permissions (the broker refuses to boot with grants
    # of users it does not have); the one user has none, so nothing restricts its routing keys either.
    definitions["topic_permissions"] = []
    module = scratch.write("baseline_app.py", BASELINE_APP.read_text(), mode=0o644)
    worker_command = (["celery", "--app", "baseline_app", *shipped_command[3:]] if variant.profile == "identical"
                      else ["celery", "--app", "baseline_app", "worker", "--concurrency", "2", "--loglevel", "INFO"])
    override = {
        "services": {
            "broker": {"volumes": [f"{scratch.write('rabbitmq.conf', config, mode=0o644)}:/etc/rabbitmq/rabbitmq.conf:ro"]},
            stack.worker_service(HARDENED_VHOST): {
                "volumes": [f"{module}:/opt/bench/baseline_app.py:ro"], "command": worker_command,
                "environment": {"BENCH_PROFILE": variant.profile, "PYTHONPATH": "/opt/bench:/app",
                                "BENCH_BROKER_URL": f"amqp://{PLAIN_USER}:{password}@{stack.broker_host}:5672/{PLAIN_VHOST}"}},
        },
        "secrets": {"definitions": {"file": str(scratch.write("definitions.json", json.dumps(definitions)))}},
    }
    return scratch.write("baseline.compose.yaml", yaml.safe_dump(override, sort_keys=False))


def quiet_override(stack, scratch) -> Path:
    """The images' healthchecks off for the broker and the measured worker (which then waits for the broker to
    start, not to be healthy: the harness waits for its readiness line anyway)."""
    off = {"healthcheck": {"disable": True}}
    override = {"services": {"broker": off, stack.worker_service(HARDENED_VHOST): {
        **off, "depends_on": {"broker": {"condition": "service_started"}}}}}
    return scratch.write("quiet.compose.yaml", yaml.safe_dump(override, sort_keys=False))


def healthcheck_cost(running: "Running", checks: int = 5) -> dict[str, float]:
    """CPU milliseconds one run of each image's healthcheck costs inside its container (cgroup counters read by
    docker stats around `checks` runs), and what the shipped 10 s interval costs per second."""
    import docker
    client = docker.from_env()
    package = importlib.import_module("tools.settings").load(running.project_dir).package
    commands = {"broker": ["broker-boot", "health"], "worker": ["python3", "-m", f"{package}.healthcheck"]}

    def cpu_seconds(container) -> float:
        return container.stats(stream=False, one_shot=True)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    cost = {}
    for name, command in commands.items():
        container = client.containers.get(running.container_ids[name])
        before = cpu_seconds(container)
        for _ in range(checks):
            container.exec_run(command)
        per_check = (cpu_seconds(container) - before) * 1e3 / checks
        cost[f"{name}_ms_per_check"] = per_check
        cost[f"{name}_ms_per_s_at_10s"] = per_check / 10
    return cost


def broker_address(under_test) -> str:
    """The broker's address on its edge network (the host routes to the engine's bridges)."""
    networks = under_test.broker.attrs["NetworkSettings"]["Networks"]
    return networks[f"{under_test.project.name}_edge"]["IPAddress"]


@contextlib.contextmanager
def running(project_dir: Path, variant: Variant) -> Iterator[Running]:
    """Start broker + one worker (prefork, concurrency 2) of the shipped compose.yaml for `variant` (the baselines
    through an override file); everything is removed on exit."""
    harness = importlib.import_module("tests.harness.stack_under_test")
    stack = importlib.import_module("tools.settings").load(project_dir)
    scratch = importlib.import_module("tests.harness.scratch").ScratchFiles("hc-bench-")
    password = secrets.token_urlsafe(24)
    overrides = (quiet_override(stack, scratch),)
    if variant.profile:
        overrides += (baseline_override(project_dir, stack, scratch, variant, password,
                                        harness.shipped_worker_command(stack.images.worker)),)
    under_test = harness.stack_under_test(project_dir, f"bench-{variant.name}", overrides=overrides)
    try:
        under_test.start("broker", stack.worker_service(HARDENED_VHOST))
        ids = {"broker": under_test.broker.id,
               "worker": under_test.project.container(stack.worker_service(HARDENED_VHOST)).id}
        yield Running(variant, project_dir, broker_address(under_test), 5672 if variant.profile else 5671,
                      password if variant.profile else None, ids)
    finally:
        under_test.stop()
        scratch.remove()
