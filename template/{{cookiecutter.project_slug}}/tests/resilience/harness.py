"""The resilience rig: the hardened stack of tests.security.stack, with what fault tests need on top.

* Dedicated test vhosts (one per concern, so tests cannot see each other's messages), defined in a
  definitions file and password files kept in a temporary directory: the project's own secrets/ and its
  production limits are never touched. The `flood` vhost has small queue and connection limits.
* The broker keeps /var/lib/rabbitmq on a docker volume instead of a tmpfs (a tmpfs is emptied when the
  container stops, which would lose every persistent message on a broker restart) and publishes its TLS
  port on a fixed loopback port, so clients reconnect to the same address after a restart.
* Workers can share a host directory as /data (their SQLite store), so the test reads the side effects.
"""
import json
import os
import socket
import sqlite3
import tempfile
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pika
from celery import Celery

from tests.security.stack import BROKER_READY, WORKER_READY, Stack, StartupFailed, wait_for_log
from tools import credentials
from tools.broker_client import Endpoint

PACKAGE = "{{ cookiecutter.package_name }}"
ADD = f"{PACKAGE}.tasks.arithmetic.add"
RECORD_PAYMENT = f"{PACKAGE}.tasks.payments.record_payment"
ACTIVATE_ACCOUNT = f"{PACKAGE}.tasks.accounts.activate_account"

# One vhost per concern. `flood` gets small limits so a flood is cheap to stage; the others keep production's.
FLOOD_QUEUE_MAX_LENGTH = 20
FLOOD_MAX_CONNECTIONS = 8
TEST_VHOSTS = {
    "hostile": {}, "redelivery": {}, "restart": {}, "load": {}, "consumer": {},
    "flood": {"queue_max_length": FLOOD_QUEUE_MAX_LENGTH, "max_connections": FLOOD_MAX_CONNECTIONS},
}


def free_loopback_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class RigEndpoint(Endpoint):
    """An Endpoint whose passwords come from the rig's own secrets directory."""

    secrets_dir: Path = Path()

    def password(self, vhost: str, role: str) -> str:
        return credentials.password_path(self.secrets_dir, vhost, role).read_text(encoding="utf-8").strip()


@dataclass
class ResilienceStack(Stack):
    secrets_dir: Path = Path()
    broker_volume: str = ""
    broker_port: int = 0
    temporary: list = field(default_factory=list)

    @property
    def endpoint(self) -> RigEndpoint:
        return RigEndpoint(self.project_dir, port=self.broker_port, secrets_dir=self.secrets_dir)

    def broker_container(self, **overrides):
        container = super().broker_container(**overrides)
        # Durable state on a volume: persistent messages survive a restart of the container.
        del container.tmpfs["/var/lib/rabbitmq"]
        container.with_volume_mapping(self.broker_volume, "/var/lib/rabbitmq", "rw")
        container.ports["5671/tcp"] = ("127.0.0.1", self.broker_port)
        default_definitions = str(self.project_dir / "secrets" / "definitions.json")
        del container.volumes[default_definitions]
        container.with_volume_mapping(str(self.secrets_dir / "definitions.json"), "/run/secrets/definitions.json",
                                      "ro")
        return container

    def worker_container(self, vhost: str, role: str = "worker", data_dir: Path | None = None,
                         command: list[str] | None = None, env: dict | None = None,
                         mounts: dict[str, str] | None = None, **overrides):
        container = super().worker_container(vhost, role, **overrides)
        del container.volumes[str(self.project_dir / "secrets" / f"{vhost}-{role}.password")]
        container.with_volume_mapping(str(credentials.password_path(self.secrets_dir, vhost, role)),
                                      "/run/secrets/broker_password", "ro")
        if data_dir is not None:              # shared with the host (and other workers): side effects visible
            del container.tmpfs["/data"]
            container.with_volume_mapping(str(data_dir), "/data", "rw")
        if command is not None:
            container.with_command(command)
        for name, value in (env or {}).items():
            container.with_env(name, value)
        for source, target in (mounts or {}).items():       # test-only files, read-only
            container.with_volume_mapping(source, target, "ro")
        return container

    def start_worker(self, vhost: str, **options):
        worker = self.run(self.worker_container(vhost, **options))
        wait_for_log(worker, WORKER_READY, timeout=60)
        return worker

    def remove(self, container) -> None:
        """Remove one container now (stop() skips containers that are already gone)."""
        wrapped = container.get_wrapped_container()
        try:
            wrapped.remove(force=True)
        except docker.errors.NotFound:
            pass
        if container in self.started:
            self.started.remove(container)

    def kill_broker(self) -> None:
        self.broker.get_wrapped_container().kill()          # SIGKILL: no clean shutdown, no flush on exit

    def start_broker_again(self, timeout: float = 90) -> float:
        """Start the same broker container again and wait for its *second* readiness line."""
        wrapped = self.broker.get_wrapped_container()
        seen = wrapped.logs().decode(errors="replace").count(BROKER_READY)
        wrapped.start()
        started = time.monotonic()
        while True:
            wrapped.reload()
            if wrapped.logs().decode(errors="replace").count(BROKER_READY) > seen:
                return time.monotonic() - started
            if wrapped.status in ("exited", "dead") or time.monotonic() - started > timeout:
                raise StartupFailed(f"broker did not come back (status {wrapped.status})")
            time.sleep(0.2)

    def stop(self) -> None:
        super().stop()
        client = docker.from_env()
        try:
            client.volumes.get(self.broker_volume).remove(force=True)
        except docker.errors.NotFound:
            pass
        for directory in self.temporary:
            directory.cleanup()


def write_rig_secrets(secrets_dir: Path, settings: dict, topology) -> None:
    """Passwords for the test vhosts and a definitions file for them, with the flood vhost's small limits."""
    app_owner = (settings["workers"]["uid"], settings["workers"]["gid"])
    broker_owner = (settings["broker"]["uid"], settings["broker"]["gid"])
    vhosts = list(TEST_VHOSTS)
    passwords = credentials.ensure_passwords(secrets_dir, vhosts, topology.ROLES,
                                             {"worker": app_owner, "producer": app_owner})
    definitions = credentials.build_definitions(vhosts, passwords, topology,
                                                overrides={v: o for v, o in TEST_VHOSTS.items() if o})
    for permission in definitions["permissions"]:
        # Remote control needs the pidbox exchanges and per-node queues, which production's permissions deny:
        # only the `consumer` test vhost allows them (test_consumer_restart drives consumers through it).
        if permission["vhost"] == "consumer" and not permission["user"].endswith("-auditor"):
            permission.update(configure=".*", write=".*", read=".*")
    credentials.write_private_file(secrets_dir / "definitions.json", json.dumps(definitions), broker_owner)


def shared_data_dir(stack: ResilienceStack) -> Path:
    """A host directory the workers (uid from stack.toml) write their SQLite store to."""
    holder = tempfile.TemporaryDirectory(prefix="resilience-data-")
    stack.temporary.append(holder)
    path = Path(holder.name)
    if os.geteuid() == 0:
        os.chown(path, stack.settings["workers"]["uid"], stack.settings["workers"]["gid"])
    os.chmod(path, 0o700)
    return path


def rows(data_dir: Path, sql: str, params: tuple = ()) -> list[tuple]:
    path = data_dir / "app.sqlite3"
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=10)) as connection:
        return connection.execute(sql, params).fetchall()


# --------------------------------------------------------------------------------------------- clients

def celery_client(stack: ResilienceStack, vhost: str, role: str = "producer") -> Celery:
    """A private Celery app configured exactly like the project's (build_config), as `<vhost>-producer`.

    Not the project's module-level app: that one belongs to the security suite's session.
    """
    from {{ cookiecutter.package_name }}.config import build_config
    from {{ cookiecutter.package_name }}.settings import BrokerSettings
    pki = stack.project_dir / "pki"
    settings = BrokerSettings(
        url=f"amqps://{vhost}-{role}@127.0.0.1:{stack.broker_port}/{vhost}",
        password_file=credentials.password_path(stack.secrets_dir, vhost, role),
        ca_file=pki / "ca.crt", cert_file=pki / f"{role}.crt", key_file=pki / f"{role}.key",
        result_backend="rpc", tls_server_name=stack.settings["broker"]["host"],
    )
    app = Celery(f"resilience-{vhost}", set_as_current=False)
    app.conf.update(build_config(settings))
    return app


def task_message(task: str | None, args=(), kwargs=None, *, task_id: str | None = None,
                 reply_to: str | None = None, body: bytes | None = None, **header_changes) -> tuple[bytes, dict, str]:
    """A Celery protocol-2 message as (body, headers, task id); header_changes=None removes a header."""
    task_id = task_id or str(uuid.uuid4())
    headers = {"lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
               "parent_id": None, "argsrepr": repr(tuple(args)), "kwargsrepr": repr(kwargs or {}),
               "origin": "resilience-tests", "ignore_result": False}
    for name, value in header_changes.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    if body is None:
        body = json.dumps([list(args), kwargs or {},
                           {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()
    return body, headers, task_id


def publish(channel, queue: str, body: bytes, headers: dict | None, *, content_type: str | None = "application/json",
            content_encoding: str | None = "utf-8", message_id: str | None = None, reply_to: str | None = None,
            correlation_id: str | None = None) -> None:
    """Publish with publisher confirms on (the channel must be in confirm mode): raises if the broker refuses."""
    channel.basic_publish(
        exchange="", routing_key=queue, body=body, mandatory=True,
        properties=pika.BasicProperties(content_type=content_type, content_encoding=content_encoding,
                                        delivery_mode=2, headers=headers, message_id=message_id,
                                        reply_to=reply_to, correlation_id=correlation_id))


def queue_depth(endpoint: Endpoint, vhost: str, queue: str) -> int:
    """Messages ready in a task queue, read as the vhost's worker (passive declare: no configure right used)."""
    with endpoint.connect(vhost, "worker") as connection:
        return connection.channel().queue_declare(queue, passive=True).method.message_count


def purge(endpoint: Endpoint, vhost: str) -> None:
    with endpoint.connect(vhost, "worker") as connection:
        channel = connection.channel()
        for queue in ("tasks", "priority"):
            channel.queue_purge(queue)
    with endpoint.connect(vhost, "auditor") as connection:
        connection.channel().queue_purge("dead-letters")


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def logs(container) -> str:
    return container.get_wrapped_container().logs().decode(errors="replace")


def is_running(container) -> bool:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return wrapped.status == "running"
