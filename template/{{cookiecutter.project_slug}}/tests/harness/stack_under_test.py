"""The stack under test: the project's own compose.yaml (plus, for an altered stack, override files layered on
top), brought up under a test project name and a free loopback port, so a stack the user runs is never touched.

The security suite, the resilience suite and the benchmark all start stacks through here; none of them
describes a container itself. Extra containers (a probe, a worker with a test's settings) are `compose run`s of
a shipped service, changed only where the test says so.
"""
import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pika
from pika.exceptions import ProbableAccessDeniedError

from tests.harness.readiness import (BROKER_READY, DASHBOARD_READY, RESULTS_READY, WORKER_READY,
                                     wait_for_connection_room, wait_for_log)
from tools import file_access, images, settings
from tools.broker_client import Endpoint
from tools.compose import ComposeProject


# Keeps concurrent runs of one suite apart, each under its own compose project `<project>-test-<purpose>-<label>`
# (the template's weakened runs go two at a time, each in its own copy of a baked project).
STACK_LABEL_VARIABLE = "TEST_STACK_LABEL"


def shipped_worker_command(image: str) -> list[str]:
    """The worker image's own CMD (`celery --app <package>.celery_app worker <flags>`): a test that runs the worker
    differently starts from it rather than copying its flags, so it cannot drift from what ships."""
    command = docker.from_env().images.get(image).attrs["Config"]["Cmd"]
    assert command[:2] == ["celery", "--app"] and command[3] == "worker", command
    return list(command)


def free_loopback_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class StackUnderTest:
    stack: settings.StackSettings
    project: ComposeProject
    broker_port: int
    management_port: int
    metrics_port: int
    results_port: int = 0                           # the result store's loopback port (result_backend = redis)
    secrets_dir: Path | None = None                 # passwords of the users tests log in as (default secrets/)
    pki_dir: Path | None = None                     # their certificates and keys (default pki/)
    one_offs: list = field(default_factory=list)    # containers started by run_one_off, removed by stop()

    @property
    def project_dir(self) -> Path:
        return self.stack.project_dir

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.project_dir, port=self.broker_port, secrets_dir=self.secrets_dir, pki_dir=self.pki_dir)

    def connect(self, vhost: str, role: str, **overrides) -> pika.BlockingConnection:
        """A connection as `<vhost>-<role>` for a test's legitimate path (endpoint.connect for the refusals).

        The broker counts a closed connection against its user until it sees the socket gone, which behind Docker's
        port proxy can take until its closing timeout (30 s; seen on CI: the auditor, limit 2, refused after two
        quick reconnects although it held nothing). Refused for that reason, wait until the broker has counted out
        the user's closed connections, then connect again."""
        try:
            return self.endpoint.connect(vhost, role, **overrides)
        except ProbableAccessDeniedError as refused:
            if "user connection limit" not in str(refused):
                raise
        topology = self.stack.topology
        wait_for_connection_room(self.broker, vhost, topology.user_name(vhost, role), room=1,
                                 limit=topology.USER_LIMITS[role]["max-connections"])
        return self.endpoint.connect(vhost, role, **overrides)

    @property
    def broker(self):
        return self.project.container("broker")

    @property
    def results(self):
        """The result store's container (result_backend = redis), else None."""
        return self.project.container(self.stack.results_host) if self.stack.result_store else None

    @property
    def workers(self) -> dict:
        return {vhost: self.project.container(self.stack.worker_service(vhost)) for vhost in self.stack.vhosts}

    @property
    def dashboards(self) -> dict:
        """vhost -> its Flower container (flower = https; none otherwise)."""
        return {vhost: self.project.container(self.stack.dashboard_service(vhost)) for vhost in self.stack.vhosts
                if self.stack.dashboard}

    def dashboard_port(self, vhost: str) -> int:
        """The loopback port the engine published the vhost's dashboard on."""
        container = self.dashboards[vhost]
        container.reload()
        return int(container.attrs["NetworkSettings"]["Ports"][f"{settings.DASHBOARD_PORT}/tcp"][0]["HostPort"])

    def result_store_settings(self, vhost: str, role: str):
        """With result_backend = redis: how `<vhost>-<role>` reaches the store of this stack (its loopback port; the
        store's certificate names 127.0.0.1 too), with its password from this stack's secrets. Otherwise None."""
        if not self.stack.result_store:
            return None
        from importlib import import_module     # the package's result_store.py exists only with the result store
        from tools import result_store
        settings = import_module(f"{self.stack.package}.result_store").ResultStoreSettings
        identity = self.stack.topology.user_name(vhost, role)
        certificate, key = self.endpoint.certificate_files(identity)
        secrets_dir = self.secrets_dir or self.project_dir / "secrets"
        return settings(f"rediss://{identity}@127.0.0.1:{self.results_port}/0",
                        result_store.credential_path(secrets_dir, identity), vhost, self.project_dir / "pki" / "ca.crt",
                        certificate, key)

    def services(self) -> dict:
        """Every long-running container of the stack, by compose service name."""
        return {"broker": self.broker, **{self.stack.worker_service(v): w for v, w in self.workers.items()},
                **{self.stack.dashboard_service(v): d for v, d in self.dashboards.items()},
                **({self.stack.results_host: self.results} if self.stack.result_store else {})}

    def start(self, *services: str) -> "StackUnderTest":
        """`up` the given services (default: all but the tools profile); ready once each logged its readiness."""
        self.project.down(stop_timeout=1)           # leftovers of an interrupted run under the same name
        self.project.up(*services, wait=False)
        wait_for_log(self.broker, BROKER_READY, timeout=120)
        ready = [(self.results, RESULTS_READY)] if self.stack.result_store and (
            not services or self.stack.results_host in services) else []
        ready += [(self.project.container(self.stack.worker_service(v)), WORKER_READY) for v in self.stack.vhosts
                 if not services or self.stack.worker_service(v) in services]
        ready += [(self.project.container(self.stack.dashboard_service(v)), DASHBOARD_READY) for v in self.stack.vhosts
                  if self.stack.dashboard and (not services or self.stack.dashboard_service(v) in services)]
        if ready:
            with ThreadPoolExecutor(max_workers=len(ready)) as pool:
                list(pool.map(lambda waiting: wait_for_log(*waiting, timeout=90), ready))
        return self

    def run_one_off(self, service: str, *command: str, env: dict | None = None, volumes: dict | None = None,
                    secret_files: dict[Path, int] | None = None):
        """A `compose run` of a shipped service with only the given changes; removed by stop(). `secret_files`
        ({host file: container uid}) are extra secrets the container reads, granted to that uid alone."""
        for path, uid in (secret_files or {}).items():
            file_access.grant_read(path, {uid})
        container = self.project.run_one_off(service, *command, env=env, volumes=volumes)
        self.one_offs.append(container)
        return container

    def remove(self, container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        if container in self.one_offs:
            self.one_offs.remove(container)

    def stop(self) -> None:
        for container in list(self.one_offs):
            self.remove(container)
        # A test stack is thrown away with its volumes: a worker's graceful shutdown (seen taking up to 5 s) buys
        # nothing here.
        self.project.down(stop_timeout=1)


def stack_under_test(project_dir: Path, purpose: str, overrides: tuple[Path, ...] = (), variables: dict | None = None,
                     secrets_dir: Path | None = None, pki_dir: Path | None = None) -> StackUnderTest:
    """Build the images if needed (cached after the first time) and describe the test stack for `purpose` (its
    compose project is `<project>-test-<purpose>`, plus `-<label>` under TEST_STACK_LABEL); call .start() to bring
    it up, .stop() to remove it."""
    label = os.environ.get(STACK_LABEL_VARIABLE, "")
    if label and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", label):
        raise ValueError(f"{STACK_LABEL_VARIABLE}={label!r}: lower-case letters, digits and dashes only "
                         "(it becomes part of a compose project name)")
    images.build_images(project_dir)
    stack = settings.load(project_dir)
    ports = {name: str(free_loopback_port()) for name in ("BROKER_TLS_PORT", "MANAGEMENT_PORT", "METRICS_PORT",
                                                          "RESULTS_TLS_PORT")}
    files = (stack.project_dir / "compose.yaml", *overrides)
    name = f"{stack.project}-test-{purpose}" + (f"-{label}" if label else "")
    project = ComposeProject(stack.project_dir, name, files, {**ports, **(variables or {})})
    return StackUnderTest(stack, project, int(ports["BROKER_TLS_PORT"]), int(ports["MANAGEMENT_PORT"]),
                          int(ports["METRICS_PORT"]), int(ports["RESULTS_TLS_PORT"]),
                          secrets_dir=secrets_dir, pki_dir=pki_dir)
