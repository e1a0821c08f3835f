"""The stacks compared, each one broker + one worker container built from the baked project's own images
and its own testcontainers Stack (tests/security/stack.py), always removed afterwards.

  hardened  the stack exactly as shipped: TLS with client certificates, JSON, validation, its settings.
  baseline  the same containers and worker settings with the security controls off: the broker's
            rabbitmq.conf replaced to add a plaintext listener, a definitions file with one user (no guest)
            holding full rights on vhost `bench` (same queue topology), and the worker running
            benchmarks/baseline_app.py (BENCH_PROFILE=identical) mounted read-only into the image.
  default   as baseline, but the worker and client use stock Celery settings (BENCH_PROFILE=default).
"""
import contextlib
import importlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pika

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
    port: int
    password: str | None
    container_ids: dict[str, str]

    def client_env(self) -> dict[str, str]:
        """Environment for benchmarks.workload: the project's own client settings, or baseline_app's."""
        if self.variant.profile:
            return {"BENCH_PROFILE": self.variant.profile,
                    "BENCH_BROKER_URL": f"amqp://{PLAIN_USER}:{self.password}@127.0.0.1:{self.port}/{PLAIN_VHOST}"}
        pki, user = self.project_dir / "pki", f"{HARDENED_VHOST}-{HARDENED_ROLE}"
        return {"TASKS_BROKER_URL": f"amqps://{user}@127.0.0.1:{self.port}/{HARDENED_VHOST}",
                "TLS_SERVER_NAME": "broker",
                "TASKS_BROKER_PASSWORD_FILE": str(self.project_dir / "secrets" / f"{user}.password"),
                "TLS_CA_FILE": str(pki / "ca.crt"), "TLS_CERT_FILE": str(pki / f"{HARDENED_ROLE}.crt"),
                "TLS_KEY_FILE": str(pki / f"{HARDENED_ROLE}.key")}

    def pika_parameters(self) -> pika.ConnectionParameters:
        if self.variant.profile:
            return pika.ConnectionParameters("127.0.0.1", self.port, PLAIN_VHOST,
                                             pika.PlainCredentials(PLAIN_USER, self.password), connection_attempts=1)
        endpoint = importlib.import_module("tools.broker_client").Endpoint(self.project_dir, port=self.port)
        return endpoint.parameters(HARDENED_VHOST, HARDENED_ROLE)


def plaintext_broker(container, project_dir: Path, settings: dict, scratch, password: str) -> None:
    """Replace rabbitmq.conf (add a plaintext listener) and the definitions (one full-rights user, no guest)."""
    credentials = importlib.import_module("tools.credentials")
    mounts = importlib.import_module("tests.security.mounts")
    topology = credentials.load_topology(project_dir, settings["package"])
    owner = (settings["broker"]["uid"], settings["broker"]["gid"])
    config = mounts.broker_config_with(project_dir, "listeners.tcp = none", "listeners.tcp.default = 5672")
    conf = scratch.write("rabbitmq.conf", config, owner, 0o644)
    definitions = credentials.build_definitions([PLAIN_VHOST], {f"{PLAIN_VHOST}-{role}": "unused"
                                                                for role in topology.ROLES}, topology)
    definitions["users"] = [{"name": PLAIN_USER, "password_hash": credentials.rabbitmq_password_hash(password),
                             "hashing_algorithm": credentials.HASHING_ALGORITHM, "tags": []}]
    definitions["permissions"] = [{"user": PLAIN_USER, "vhost": PLAIN_VHOST,
                                   "configure": ".*", "write": ".*", "read": ".*"}]
    defs = scratch.write("definitions.json", json.dumps(definitions), owner, 0o600)
    mounts.remount(container, conf, "/etc/rabbitmq/rabbitmq.conf")
    mounts.remount(container, defs, "/run/secrets/definitions.json")
    container.ports["5672/tcp"] = ("127.0.0.1", None)


def baseline_worker(container, variant: Variant, scratch, password: str, shipped_command: list[str]) -> None:
    """The project's worker container (same image, limits, hardening flags), running baseline_app instead:
    with the image's own worker flags (`identical`) or with stock Celery's (`default`)."""
    module = scratch.write("baseline_app.py", BASELINE_APP.read_text(), (0, 0), 0o644)
    container.volumes = {str(module): {"bind": "/opt/bench/baseline_app.py", "mode": "ro"}}
    container.env.pop("TASKS_BROKER_URL", None)
    container.with_env("BENCH_PROFILE", variant.profile).with_env("PYTHONPATH", "/opt/bench:/app")
    container.with_env("BENCH_BROKER_URL", f"amqp://{PLAIN_USER}:{password}@broker:5672/{PLAIN_VHOST}")
    if variant.profile == "identical":
        container.with_command(["celery", "--app", "baseline_app", *shipped_command[3:]])
    else:
        container.with_command(["celery", "--app", "baseline_app", "worker", "--concurrency", "2",
                                "--loglevel", "INFO"])


@contextlib.contextmanager
def running(project_dir: Path, settings: dict, variant: Variant) -> Iterator[Running]:
    """Start broker + one worker (prefork, concurrency 2) for `variant`; everything is removed on exit."""
    stack_module = importlib.import_module("tests.security.stack")
    network_module = importlib.import_module("testcontainers.core.network")
    stack = stack_module.Stack(project_dir, settings, network_module.Network().create())
    scratch = importlib.import_module("tests.security.mounts").ScratchFiles("hc-bench-")
    password = secrets.token_urlsafe(24)
    try:
        broker = stack.broker_container()
        if variant.profile:
            plaintext_broker(broker, project_dir, settings, scratch, password)
        stack.broker = stack.run(broker)
        stack_module.wait_for_log(broker, stack_module.BROKER_READY, timeout=90)
        worker = stack.worker_container(HARDENED_VHOST)
        if variant.profile:
            baseline_worker(worker, variant, scratch, password, stack_module.shipped_worker_command(worker.image))
        stack.run(worker)
        stack_module.wait_for_log(worker, stack_module.WORKER_READY, timeout=60)
        port = int(broker.get_exposed_port(5672 if variant.profile else 5671))
        ids = {"broker": broker.get_wrapped_container().id, "worker": worker.get_wrapped_container().id}
        yield Running(variant, project_dir, port, password if variant.profile else None, ids)
    finally:
        stack.stop()
        scratch.remove()
