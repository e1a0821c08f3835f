"""Consumer cancelled and re-added (prefetch multiplier 1, TLS): the worker must keep consuming.

Reported: after such a restart the worker took its prefetched tasks, then stopped consuming for 25-59 s while
the queue stayed full (celery issue 1960 pattern). Remote control is disabled here, so the restart is done
from inside a worker by a test-only bootstep (consumer_cycler.py, bind-mounted, never in the image).
The test measures the longest pause in consumption after the restart, bounded in time.
"""
import time
from pathlib import Path

import pytest

from tests.resilience.harness import ADD, logs, publish, queue_depth, task_message, wait_until

VHOST = "consumer"
CYCLER = Path(__file__).with_name("consumer_cycler.py")
BACKLOG = 600
STALL_SECONDS = 10.0       # consumption paused this long with tasks queued = the reported stall


def fill(endpoint, count: int) -> None:
    with endpoint.connect(VHOST, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for number in range(count):
            body, headers, _ = task_message(ADD, (number, 1))
            publish(channel, "tasks", body, headers)


def longest_pause_after_restart(rig, worker, restarts: int = 6) -> list[float]:
    """Trigger `restarts` consumer restarts while a backlog is queued; per restart, the longest time the queue
    depth did not move while tasks were still queued (bounded by 2 x STALL_SECONDS)."""
    pauses = []
    endpoint = rig.endpoint
    for attempt in range(restarts):
        fill(endpoint, BACKLOG)
        wait_until(lambda: queue_depth(endpoint, VHOST, "tasks") < BACKLOG - 20, timeout=60, what="consumption")
        seen = logs(worker).count("consumer-cycler: re-added")
        worker.exec(["touch", "/tmp/cycle-consumer"])
        wait_until(lambda: logs(worker).count("consumer-cycler: re-added") > seen, timeout=10,
                   interval=0.05, what="the consumer restart")
        last_depth, last_move, longest = queue_depth(endpoint, VHOST, "tasks"), time.monotonic(), 0.0
        while last_depth > 0 and longest < 2 * STALL_SECONDS:
            time.sleep(0.25)
            depth = queue_depth(endpoint, VHOST, "tasks")
            now = time.monotonic()
            longest = max(longest, now - last_move)
            if depth != last_depth:
                last_depth, last_move = depth, now
        pauses.append(round(longest, 2))
        if last_depth > 0:
            with endpoint.connect(VHOST, "worker") as connection:
                connection.channel().queue_purge("tasks")
    return pauses


def cycler_worker(workers, drain: bool):
    return workers(VHOST, command=["python3", "/opt/test-hooks/consumer_cycler.py"],
                   env={"PYTHONPATH": "/app:/opt/test-hooks", "CYCLER_DRAIN_AFTER_CONSUME": "1" if drain else "0"},
                   mounts={str(CYCLER): "/opt/test-hooks/consumer_cycler.py"})


@pytest.mark.live
def test_consumer_restart_over_tls_with_prefetch_1_does_not_stall(rig, workers, clean_vhost, record_property):
    clean_vhost(VHOST)
    worker = cycler_worker(workers, drain=False)
    pauses = longest_pause_after_restart(rig, worker)
    assert logs(worker).count("consumer-cycler: cancelled ['tasks', 'priority']") == len(pauses)
    record_property("evidence", f"longest consumption pause after each of {len(pauses)} consumer restarts: {pauses} s")
    print("pauses", pauses)
    assert max(pauses) < STALL_SECONDS, f"worker stalled after a consumer restart: {pauses}"
