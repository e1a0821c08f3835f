"""SIGKILL in the middle of a task: the task is redelivered and completed, with its side effect applied once.

"In the middle" is made deterministic: the test holds an exclusive lock on the workers' SQLite store (a host
directory shared by the workers), so the task body blocks inside its first write (for up to the store's 2 s
busy timeout) while the test kills the worker; the lock is released right after the kill.
Relies on task_acks_late (the message is acked only after the task ran) and task_reject_on_worker_lost
(a pool process killed under a task sends the message back to the queue instead of failing it).
"""
import re
import sqlite3
from contextlib import closing, contextmanager

import pytest

from tests.resilience.harness import (ACTIVATE_ACCOUNT, celery_client, logs, rows, shared_data_dir, wait_until)

VHOST = "redelivery"


@contextmanager
def store_locked(data_dir):
    """Hold an exclusive lock on the store: every write by a worker blocks until released (or times out)."""
    with closing(sqlite3.connect(data_dir / "app.sqlite3", timeout=10, isolation_level=None)) as connection:
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")


def received(worker, task_id: str) -> bool:
    return f"[{task_id}] received" in logs(worker)


def warm_up(client, data_dir) -> None:
    """One task end to end: creates the store (owned by the worker uid) and proves the pipeline."""
    assert client.send_task(ACTIVATE_ACCOUNT, (1,)).get(timeout=60) == {"account_id": 1, "changed": True}
    assert (data_dir / "app.sqlite3").exists()


def account_rows(data_dir, account_id: int) -> list[tuple]:
    return rows(data_dir, "SELECT account_id, active FROM accounts WHERE account_id = ?", (account_id,))


@pytest.mark.live
def test_worker_container_killed_mid_task_another_worker_completes_it_once(rig, workers, clean_vhost,
                                                                         record_property):
    clean_vhost(VHOST)
    data_dir = shared_data_dir(rig)
    first = workers(VHOST, data_dir=data_dir)
    client = celery_client(rig, VHOST)
    try:
        warm_up(client, data_dir)
        with store_locked(data_dir):
            result = client.send_task(ACTIVATE_ACCOUNT, (4242,))
            wait_until(lambda: received(first, result.id), timeout=30, interval=0.05, what="the task to start")
            first.get_wrapped_container().kill()          # SIGKILL to the whole worker, mid-task
        assert account_rows(data_dir, 4242) == [], "the killed worker's write must not have happened"
        second = workers(VHOST, data_dir=data_dir)
        outcome = result.get(timeout=60)
    finally:
        client.close()
    assert outcome == {"account_id": 4242, "changed": True}
    assert account_rows(data_dir, 4242) == [(4242, 1)]            # applied exactly once
    # The pool process publishes the result before it logs the success line: wait for the line.
    wait_until(lambda: f"[{result.id}] succeeded" in logs(second), timeout=10, what="the second worker's log line")
    assert f"[{result.id}] succeeded" not in logs(first)
    record_property("evidence", f"task {result.id} killed (SIGKILL) on the first worker, completed by the second; "
                                "one row in the store")


@pytest.mark.live
def test_pool_process_killed_mid_task_task_is_requeued_not_failed(rig, workers, clean_vhost, record_property):
    clean_vhost(VHOST)
    data_dir = shared_data_dir(rig)
    worker = workers(VHOST, data_dir=data_dir)
    client = celery_client(rig, VHOST)
    try:
        warm_up(client, data_dir)
        with store_locked(data_dir):
            result = client.send_task(ACTIVATE_ACCOUNT, (4343,))
            wait_until(lambda: received(worker, result.id), timeout=30, interval=0.05, what="the task to start")
            # SIGKILL every pool process (children of the worker's main process, pid 1); the main process lives.
            killed = worker.exec(["sh", "-c", "for pid in $(cat /proc/1/task/1/children); do kill -9 $pid; done"])
            assert killed.exit_code == 0, killed.output
        outcome = result.get(timeout=60)
    finally:
        client.close()
    log = logs(worker)
    assert re.search(r"exited with 'signal 9 \(SIGKILL\)'", log), log[-2000:]
    assert outcome == {"account_id": 4343, "changed": True}         # redelivered and run, not failed
    assert account_rows(data_dir, 4343) == [(4343, 1)]
    assert log.count(f"[{result.id}] received") == 2                # delivered twice, applied once
    record_property("evidence", f"pool process of task {result.id} SIGKILLed: WorkerLostError, message requeued, "
                                "task run again by a new pool process; one row in the store")
