"""The stack under test as testcontainers: the broker and one worker per vhost, hardened as in compose.yaml."""
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk's image may be unreachable; we clean up

import docker  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.network import Network  # noqa: E402

from tests.security.weakenings import Weakening, selected  # noqa: E402
from tools import images  # noqa: E402
from tools.broker_client import Endpoint  # noqa: E402

BROKER_READY = "Server startup complete"
WORKER_READY = " ready."
HARDENING = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}


class StartupFailed(RuntimeError):
    """A container exited or never logged its readiness line; the message carries its log tail."""


def wait_for_log(container: DockerContainer, needle: str, timeout: float) -> float:
    """Readiness is proven by a log line; a container that exits first fails at once (boots can exit 0)."""
    started = time.monotonic()
    wrapped = container.get_wrapped_container()
    while True:
        logs = wrapped.logs().decode(errors="replace")
        if needle in logs:
            return time.monotonic() - started
        wrapped.reload()
        if wrapped.status in ("exited", "dead") or time.monotonic() - started > timeout:
            raise StartupFailed(f"{container.image} did not log {needle!r} (status {wrapped.status}):\n{logs[-3000:]}")
        time.sleep(0.2)


def shipped_worker_command(image: str) -> list[str]:
    """The worker image's own CMD (`celery --app <package>.celery_app worker <flags>`): stacks that run the
    worker differently start from it rather than copying its flags, so they cannot drift from what ships."""
    command = docker.from_env().images.get(image).attrs["Config"]["Cmd"]
    assert command[:2] == ["celery", "--app"] and command[3] == "worker", command
    return list(command)


def tmpfs(size: str, uid: int, gid: int) -> str:
    return f"size={size},uid={uid},gid={gid},mode=0700"


@dataclass
class Stack:
    project_dir: Path
    settings: dict
    network: Network
    broker: DockerContainer | None = None
    workers: dict[str, DockerContainer] = field(default_factory=dict)
    started: list[DockerContainer] = field(default_factory=list)   # everything to remove, even mid-start
    weakening: Weakening | None = None                              # only for the suite's self-test

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.project_dir, port=int(self.broker.get_exposed_port(5671)))

    def broker_container(self, **overrides) -> DockerContainer:
        broker = self.settings["broker"]
        pki, secrets = self.project_dir / "pki", self.project_dir / "secrets"
        container = DockerContainer(self.settings["images"]["broker"])
        container.ports["5671/tcp"] = ("127.0.0.1", None)          # published on loopback only
        if broker["management"] == "https":
            container.ports["15671/tcp"] = ("127.0.0.1", None)
        for source, target in ((pki / "ca.crt", "ca.crt"), (pki / "broker.crt", "broker.crt"),
                               (pki / "broker.key", "broker.key"), (secrets / "definitions.json", "definitions.json")):
            container.with_volume_mapping(str(source), f"/run/secrets/{target}", "ro")
        for path, size in (("/var/lib/rabbitmq", "256m"), ("/var/log/rabbitmq", "16m"), ("/tmp", "16m")):
            container.tmpfs[path] = tmpfs(size, broker["uid"], broker["gid"])
        container.with_network(self.network).with_network_aliases(broker["host"])
        container.with_kwargs(**{**HARDENING, "user": f"{broker['uid']}:{broker['gid']}", "mem_limit": "1g",
                                 "pids_limit": 1024, **overrides})
        if self.weakening:
            self.weakening.broker(container)
        return container

    def worker_container(self, vhost: str, role: str = "worker", **overrides) -> DockerContainer:
        workers, broker = self.settings["workers"], self.settings["broker"]
        pki, secrets = self.project_dir / "pki", self.project_dir / "secrets"
        container = DockerContainer(self.settings["images"]["worker"])
        container.with_env("TASKS_BROKER_URL", f"amqps://{vhost}-{role}@{broker['host']}:{broker['tls_port']}/{vhost}")
        for source, target in ((pki / "ca.crt", "ca.crt"), (pki / f"{role}.crt", "client.crt"),
                               (pki / f"{role}.key", "client.key"),
                               (secrets / f"{vhost}-{role}.password", "broker_password")):
            container.with_volume_mapping(str(source), f"/run/secrets/{target}", "ro")
        container.tmpfs["/tmp"] = tmpfs("64m", workers["uid"], workers["gid"])
        container.tmpfs["/data"] = tmpfs("64m", workers["uid"], workers["gid"])
        container.with_network(self.network)
        kwargs = {**HARDENING, "user": f"{workers['uid']}:{workers['gid']}", "mem_limit": "512m", "pids_limit": 256,
                  **overrides}
        if self.weakening:
            kwargs = self.weakening.worker(container, kwargs)
        container.with_kwargs(**kwargs)
        return container

    def run(self, container: DockerContainer) -> DockerContainer:
        """Start a container and remember it for stop(), before anything can fail."""
        self.started.append(container)
        return container.start()

    def start(self) -> "Stack":
        self.broker = self.run(self.broker_container())
        wait_for_log(self.broker, BROKER_READY, timeout=90)
        vhosts = self.settings["workers"]["vhosts"]
        with ThreadPoolExecutor(max_workers=len(vhosts)) as pool:   # workers are independent: start together
            started = list(pool.map(self.start_worker, vhosts))
        self.workers = dict(zip(vhosts, started))
        return self

    def start_worker(self, vhost: str) -> DockerContainer:
        worker = self.run(self.worker_container(vhost))
        wait_for_log(worker, WORKER_READY, timeout=60)
        return worker

    def stop(self) -> None:
        for container in reversed(self.started):
            if container.get_wrapped_container() is not None:
                container.stop()
        self.started.clear()
        self.network.remove()
        if self.weakening:
            self.weakening.cleanup()


def start_stack(project_dir: Path) -> Stack:
    """Build images if needed (cached after the first run) and start broker + workers; always cleaned up."""
    images.build_images(project_dir)
    settings = images.load_settings(project_dir)
    weakening = Weakening(selected(), project_dir, settings) if selected() else None
    stack = Stack(project_dir, settings, Network().create(), weakening=weakening)
    try:
        return stack.start()
    except BaseException:
        stack.stop()
        raise
