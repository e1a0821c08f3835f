"""The resilience rig: the shipped compose stack (tests/harness), with what fault tests need on top.

* Dedicated test vhosts (one per concern, so tests cannot see each other's messages), defined in a definitions
  file, password files and certificates (one per identity, from the project CA) of a temporary directory that
  rig.compose.yaml mounts over the project's own: the project's secrets/, its production limits and its
  identities are never touched. The `flood` vhost has small queue and
  connection limits.
* The broker keeps /var/lib/rabbitmq on its compose volume, so persistent messages survive a restart, and its TLS
  port stays on the same loopback port, so clients reconnect to the same address.
* Workers are `compose run`s of the shipped worker service, pointed at a test vhost: only their broker URL, their
  password file and /data (a host directory, so a test reads the side effects) differ, plus what a test adds.
"""
import json
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from tests.harness.readiness import BROKER_READY, WORKER_READY, StartupFailed, logs, wait_for_log
from tests.harness.scratch import ScratchFiles
from tests.harness.stack_under_test import StackUnderTest, stack_under_test
from tools import credentials, file_access, settings
from tls import write_client_pair
from tools.broker_client import Endpoint

PACKAGE = "{{ cookiecutter.package_name }}"
ADD = f"{PACKAGE}.tasks.arithmetic.add"
RECORD_PAYMENT = f"{PACKAGE}.tasks.payments.record_payment"
# A private app (celery_client below) has none of the project's tasks registered, so Celery's router cannot read the
# queue a task declares (config.route_to_declared_queue): a payment sent by name says where it goes, as any producer
# sending by name without the tasks package must (the worker dead-letters it from any other queue).
PAYMENT_ROUTE = {"queue": "priority", "priority": 9}
ACTIVATE_ACCOUNT = f"{PACKAGE}.tasks.accounts.activate_account"
OVERRIDE_FILE = Path(__file__).with_name("rig.compose.yaml")

# One vhost per concern. `flood` gets small limits so a flood is cheap to stage; the others keep production's.
FLOOD_QUEUE_MAX_LENGTH = 20
FLOOD_MAX_CONNECTIONS = 8
TEST_VHOSTS = {
    "hostile": {}, "redelivery": {}, "restart": {}, "load": {}, "consumer": {}, "noisy": {}, "quiet": {},
    "flood": {"queue_max_length": FLOOD_QUEUE_MAX_LENGTH, "max_connections": FLOOD_MAX_CONNECTIONS},
}


@dataclass
class Rig:
    under_test: StackUnderTest
    scratch: ScratchFiles

    @property
    def stack(self) -> settings.StackSettings:
        return self.under_test.stack

    @property
    def project_dir(self) -> Path:
        return self.stack.project_dir

    @property
    def endpoint(self) -> Endpoint:
        return self.under_test.endpoint

    @property
    def broker(self):
        return self.under_test.broker

    def start_worker(self, vhost: str, data_dir: Path | None = None, command: tuple[str, ...] = (),
                     env: dict | None = None, mounts: dict[str, str] | None = None):
        """The shipped worker service, logged in as `<vhost>-worker` of a test vhost (that identity's certificate,
        and its password with password login); ready once it consumes."""
        user = self.stack.topology.user_name(vhost, "worker")
        certificate, key = self.endpoint.certificate_files(user)
        secret_files = [key]
        volumes = {str(certificate): "/run/secrets/client.crt:ro", str(key): "/run/secrets/client.key:ro",
                   str(data_dir or shared_data_dir(self)): "/data",
                   **{source: f"{target}:ro" for source, target in (mounts or {}).items()}}
        if self.stack.passwords:
            password = self.endpoint.password_file(vhost, "worker")
            volumes[str(password)] = "/run/secrets/broker_password:ro"
            secret_files.append(password)
        worker = self.under_test.run_one_off(
            self.stack.worker_service(self.stack.vhosts[0]), *command,
            env={"TASKS_BROKER_URL": f"amqps://{user}@{self.stack.broker_host}:5671/{vhost}", **(env or {})},
            volumes=volumes, secret_files={path: self.stack.worker_uid for path in secret_files})
        wait_for_log(worker, WORKER_READY, timeout=90)
        return worker

    def remove(self, container) -> None:
        self.under_test.remove(container)

    def kill_broker(self) -> None:
        self.broker.kill()          # SIGKILL: no clean shutdown, no flush on exit (and no restart by its policy)

    def start_broker_again(self, timeout: float = 120) -> float:
        """Start the same broker container again and wait for its *next* readiness line."""
        broker = self.broker
        seen = logs(broker).count(BROKER_READY)
        started = time.monotonic()
        broker.start()
        try:
            wait_for_log(broker, BROKER_READY, timeout=timeout, occurrences=seen + 1)
        except StartupFailed as exc:
            raise StartupFailed(f"the broker did not come back: {exc}") from None
        return time.monotonic() - started

    def stop(self) -> None:
        try:
            self.under_test.stop()
        finally:
            self.scratch.remove()


def start_rig(project_dir: Path) -> Rig:
    """The shipped stack's broker, with the test vhosts' definitions; each test starts the workers it needs."""
    scratch = ScratchFiles("resilience-rig-")
    secrets_dir, pki_dir = scratch.directory("secrets"), scratch.directory("pki")
    stack = settings.load(project_dir)
    write_rig_secrets(secrets_dir, stack)
    write_rig_identities(pki_dir, stack)
    under_test = stack_under_test(project_dir, "resilience", overrides=(OVERRIDE_FILE,),
                                  variables={"RIG_SECRETS_DIR": str(secrets_dir)}, secrets_dir=secrets_dir,
                                  pki_dir=pki_dir)
    rig = Rig(under_test, scratch)
    try:
        under_test.start("broker")
        return rig
    except BaseException:
        rig.stop()
        raise


def write_rig_secrets(secrets_dir: Path, stack: settings.StackSettings) -> None:
    """Passwords for the test vhosts (password login) and a definitions file for them, with the flood vhost's small
    limits."""
    vhosts = list(TEST_VHOSTS)
    identities = [stack.topology.user_name(vhost, role) for vhost in vhosts for role in stack.topology.ROLES]
    passwords = credentials.ensure_credentials(secrets_dir, identities, stack.topology) if stack.passwords else None
    definitions = credentials.build_definitions(vhosts, passwords, stack.topology,
                                                overrides={v: o for v, o in TEST_VHOSTS.items() if o})
    for permission in definitions["permissions"]:
        # Remote control needs the pidbox exchanges and per-node queues, which production's permissions deny:
        # only the `consumer` test vhost allows them (test_consumer_restart drives consumers through it).
        auditor = stack.topology.user_name("consumer", "auditor")      # and, with password login, auditor.b
        if permission["vhost"] == "consumer" and not permission["user"].startswith(auditor):
            permission.update(configure=".*", write=".*", read=".*")
    credentials.write_private_file(secrets_dir / "definitions.json", json.dumps(definitions))


def write_rig_identities(pki_dir: Path, stack: settings.StackSettings) -> None:
    """A certificate and key for every user of the test vhosts, issued by the project's issuing CA, as the bake does."""
    for vhost in TEST_VHOSTS:
        for role in stack.topology.ROLES:
            write_client_pair(stack.project_dir / "pki", stack.topology.user_name(vhost, role), pki_dir)


def shared_data_dir(rig: Rig) -> Path:
    """A host directory a worker (uid from stack.toml) keeps its SQLite store in and the test reads: owned by
    whoever runs the tests, writable by the worker uid alone besides (an ACL entry), root or not."""
    path = rig.scratch.path / f"data-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    file_access.grant(path, {rig.stack.worker_uid}, file_access.READ | file_access.WRITE | file_access.EXECUTE)
    return path


def rows(data_dir: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a worker's store, read-only; none while the store (or its tables) does not exist yet."""
    path = data_dir / "app.sqlite3"
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as connection:
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):          # the worker is creating the store right now
                return []
            raise


def count(data_dir: Path, table: str) -> int:
    found = rows(data_dir, f"SELECT count(*) FROM {table}")  # nosec B608 - table names are the tests' own
    return found[0][0] if found else 0


# --------------------------------------------------------------------------------------------- clients

def celery_client(rig: Rig, vhost: str, role: str = "producer") -> Celery:
    """A private Celery app configured exactly like the project's (build_config), as `<vhost>-<role>`.

    Not one from create_app: that would register the project's tasks and become the process's default app, while
    these clients (several per test, one per vhost and role) send by name, as any producer without the tasks may.
    """
    from {{ cookiecutter.package_name }}.config import build_config
    from {{ cookiecutter.package_name }}.broker_settings import BrokerSettings
    user = rig.stack.topology.user_name(vhost, role)
    certificate, key = rig.endpoint.certificate_files(user)
    broker = BrokerSettings(
        url=f"amqps://{user}@127.0.0.1:{rig.under_test.broker_port}/{vhost}",
        login=rig.stack.login,
        password_file=rig.endpoint.password_file(vhost, role) if rig.stack.passwords else None,
        ca_file=rig.project_dir / "pki" / "ca.crt", cert_file=certificate, key_file=key,
        result_backend="rpc", tls_server_name=rig.stack.broker_host,
    )
    app = Celery(f"resilience-{vhost}", set_as_current=False)
    app.conf.update(build_config(broker))
    return app


def queue_depth(endpoint: Endpoint, vhost: str, queue: str) -> int:
    """Messages ready in a task queue, read as the vhost's worker (passive declare: no configure right used)."""
    with endpoint.connect(vhost, "worker") as connection:
        return connection.channel().queue_declare(queue, passive=True).method.message_count


def purge(endpoint: Endpoint, vhost: str) -> None:
    """Empty the task queues. The dead-letter evidence is a stream nobody can purge: tests read it from a mark."""
    with endpoint.connect(vhost, "worker") as connection:
        channel = connection.channel()
        for queue in ("tasks", "priority"):
            channel.queue_purge(queue)


def is_running(container) -> bool:
    container.reload()
    return container.status == "running"
