"""Fixtures of the live resilience suite: the shipped broker (durable on its volume) for the session, workers per
test, everything removed afterwards."""
from pathlib import Path

import pytest

from tests.harness.readiness import wait_for_closed_connections
from tests.resilience.harness import purge, start_rig

PROJECT_DIR = Path(__file__).resolve().parents[2]


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
    """Empty a vhost's task queues before the test uses it (its dead-letter evidence is read from a mark)."""
    def clean(vhost: str) -> str:
        # Before: the purge's own connections must not meet an earlier test's closed ones still counted against
        # the auditor's limit of 2. After: the limits tests count from zero.
        wait_for_closed_connections(rig.broker, vhost)
        purge(rig.endpoint, vhost)
        wait_for_closed_connections(rig.broker, vhost)
        return vhost
    return clean
