"""Fixtures of the live resilience suite: one broker (durable on a volume) for the session, workers per test."""
import tempfile
import uuid
from pathlib import Path

import pytest
from testcontainers.core.network import Network

from tests.resilience.harness import ResilienceStack, free_loopback_port, purge, write_rig_secrets
from tests.security.stack import BROKER_READY, wait_for_log
from tools import credentials, images

PROJECT_DIR = Path(__file__).resolve().parents[2]


def start_rig(project_dir: Path) -> ResilienceStack:
    """Like tests.security.stack.start_stack, but broker only: each test starts the workers it needs."""
    built = images.build_images(project_dir)
    settings = images.load_settings(project_dir)
    # Pin the images just built by id: another checkout of the project may retag `<slug>-worker:local` meanwhile.
    settings["images"].update(broker=built["broker_id"], worker=built["worker_id"])
    secrets = tempfile.TemporaryDirectory(prefix="resilience-secrets-")
    topology = credentials.load_topology(project_dir, settings["package"])
    write_rig_secrets(Path(secrets.name), settings, topology)
    stack = ResilienceStack(project_dir, settings, Network().create(), secrets_dir=Path(secrets.name),
                            broker_volume=f"resilience-broker-{uuid.uuid4().hex[:12]}",
                            broker_port=free_loopback_port(), temporary=[secrets])
    try:
        stack.broker = stack.run(stack.broker_container())
        wait_for_log(stack.broker, BROKER_READY, timeout=90)
        return stack
    except BaseException:
        stack.stop()
        raise


@pytest.fixture(scope="session")
def rig():
    running = start_rig(PROJECT_DIR)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def workers(rig):
    """Start workers for one test; every one of them is removed afterwards, whatever happened to it."""
    started = []

    def start(vhost: str, **options):
        worker = rig.start_worker(vhost, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        rig.remove(worker)


@pytest.fixture
def clean_vhost(rig):
    """Empty a vhost's task and dead-letter queues before the test uses it."""
    def clean(vhost: str) -> str:
        purge(rig.endpoint, vhost)
        return vhost
    return clean
