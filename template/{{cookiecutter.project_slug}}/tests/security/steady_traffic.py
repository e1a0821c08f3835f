"""Steady task traffic through the project's own Celery client, for the tests that rotate a credential under load
(TLS-07, CRED-08): every task either completes or is kept as a failure, with the times in between."""
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.harness.readiness import wait_until

# The rpc result backend names a thread's reply queue after its thread id (Celery's thread_oid), which Python hands
# to a new thread once the old one has ended, while the ended thread's backend may still consume from that queue: a
# later thread's results went to that consumer (seen: its every get() timed out). So one long-lived thread sends
# every test's steady traffic.
TRAFFIC_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="steady-traffic")


class SteadyTraffic:
    """add(n, 1) through the project's Celery client, one after another, each awaited: while it runs, every task
    sent is either completed (its time kept) or a failure (kept)."""

    def __init__(self, add):
        self.add, self.stopping = add, threading.Event()
        self.completed: list[float] = []
        self.failures: list[str] = []
        self.running = None

    def start(self) -> None:
        self.running = TRAFFIC_THREAD.submit(self.run)

    def stop(self) -> None:
        self.stopping.set()
        self.running.result(timeout=60)

    def run(self):
        number = 0
        while not self.stopping.is_set():
            number += 1
            try:
                result = self.add.delay(number, 1).get(timeout=30)
            except Exception as exc:                # noqa: BLE001 - every failure is the evidence
                self.failures.append(repr(exc))
                continue
            if result == number + 1:
                self.completed.append(time.monotonic())
            else:
                self.failures.append(f"add({number}, 1) = {result}")

    def completed_since(self, moment: float) -> int:
        return sum(done > moment for done in self.completed)

    def wait_for(self, count: int, since: float = 0.0, timeout: float = 60) -> None:
        """Until `count` tasks have completed after `since`; on timeout the last failures say why."""
        try:
            wait_until(lambda: self.completed_since(since) >= count, timeout=timeout, what=f"{count} completed tasks")
        except AssertionError as late:
            raise AssertionError(f"{late}; the last failures: {self.failures[-3:]}") from None

    def longest_gap(self) -> float:
        return max((later - earlier for earlier, later in itertools.pairwise(self.completed)), default=0.0)
