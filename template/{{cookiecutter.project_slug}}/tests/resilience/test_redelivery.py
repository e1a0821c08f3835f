"""SIGKILL in the middle of a task: the task is redelivered and completed, with its side effect applied once.

"In the middle" is an event, not a race: a process in the worker's container holds an exclusive lock on the
workers' SQLite store (a host directory shared by the workers), and the workers wait for a lock far longer than
the test needs (APP_STORE_BUSY_TIMEOUT), so the task body is blocked inside its first write when the test kills
the worker; the lock goes with the killed container, or is released right after the kill.
Relies on task_acks_late (the message is acked only after the task ran) and task_reject_on_worker_lost
(a pool process killed under a task sends the message back to the queue instead of failing it).
"""
import re
import sqlite3
from contextlib import closing, contextmanager

import pytest

from tests.harness.readiness import logs, wait_until
from tests.resilience.harness import ACTIVATE_ACCOUNT, celery_client, rows, shared_data_dir

VHOST = "redelivery"
# Long enough that the kill always lands while the body waits for the lock; DEBUG logging for the line that says a
# pool process took the task ("Task accepted"), the event the kill waits for.
WAITS_FOR_THE_LOCK = {"APP_STORE_BUSY_TIMEOUT": "600", "LOG_LEVEL": "DEBUG"}
RELEASE_FILE = ".release-lock"
# Runs as the worker's uid inside its container: takes the store's write lock and holds it until the release file
# appears (or its container dies).
LOCK_HOLDER = f"""
import os, sqlite3, time
connection = sqlite3.connect("/data/app.sqlite3", isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
while not os.path.exists("/data/{RELEASE_FILE}"):
    time.sleep(0.05)
connection.execute("ROLLBACK")
"""


def store_is_locked(data_dir) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{data_dir / 'app.sqlite3'}?mode=ro", uri=True, timeout=0)) as reader:
            reader.execute("SELECT count(*) FROM accounts").fetchall()
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    return False


@contextmanager
def store_locked(worker, data_dir):
    """Hold an exclusive lock on the store from inside `worker`'s container: every write by a worker blocks."""
    (data_dir / RELEASE_FILE).unlink(missing_ok=True)
    worker.exec_run(["python3", "-c", LOCK_HOLDER], detach=True)
    wait_until(lambda: store_is_locked(data_dir), timeout=30, what="the store lock")
    try:
        yield
    finally:
        (data_dir / RELEASE_FILE).touch()


def running(worker, task_id: str) -> bool:
    """A pool process has taken the task (its body is then blocked on the store's lock)."""
    return f"Task accepted: {ACTIVATE_ACCOUNT}[{task_id}]" in logs(worker)


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
    first = workers(VHOST, data_dir=data_dir, env=WAITS_FOR_THE_LOCK)
    client = celery_client(rig, VHOST)
    try:
        warm_up(client, data_dir)
        with store_locked(first, data_dir):
            result = client.send_task(ACTIVATE_ACCOUNT, (4242,))
            wait_until(lambda: running(first, result.id), timeout=60, what="a pool process to take the task")
            first.kill()                                  # SIGKILL to the whole worker, mid-task
        assert account_rows(data_dir, 4242) == [], "the killed worker's write must not have happened"
        second = workers(VHOST, data_dir=data_dir)
        outcome = result.get(timeout=60)
    finally:
        client.close()
    assert outcome == {"account_id": 4242, "changed": True}
    assert account_rows(data_dir, 4242) == [(4242, 1)]            # applied exactly once
    # The pool process publishes the result before it logs the success line: wait for the line.
    wait_until(lambda: f"[{result.id}] succeeded" in logs(second), timeout=30, what="the second worker's log line")
    assert f"[{result.id}] succeeded" not in logs(first)
    record_property("evidence", f"task {result.id} killed (SIGKILL) on the first worker, completed by the second; "
                                "one row in the store")


@pytest.mark.live
def test_pool_process_killed_mid_task_task_is_requeued_not_failed(rig, workers, clean_vhost, record_property):
    clean_vhost(VHOST)
    data_dir = shared_data_dir(rig)
    worker = workers(VHOST, data_dir=data_dir, env=WAITS_FOR_THE_LOCK)
    client = celery_client(rig, VHOST)
    try:
        warm_up(client, data_dir)
        with store_locked(worker, data_dir):
            result = client.send_task(ACTIVATE_ACCOUNT, (4343,))
            wait_until(lambda: running(worker, result.id), timeout=60, what="a pool process to take the task")
            # SIGKILL every pool process (children of the worker's main process, pid 1); the main process lives.
            killed = worker.exec_run(["sh", "-c", "for pid in $(cat /proc/1/task/1/children); do kill -9 $pid; done"])
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
