"""Readiness proven by events, never by sleeping: a container is ready when it logs its readiness line."""
import time

BROKER_READY = "Server startup complete"      # RabbitMQ, once every listener is up
WORKER_READY = " ready."                      # Celery's worker, once it consumes


class StartupFailed(RuntimeError):
    """A container exited or never logged its readiness line; the message carries its log tail."""


def logs(container) -> str:
    return container.logs().decode(errors="replace")


def wait_for_log(container, needle: str, timeout: float, occurrences: int = 1) -> float:
    """Wait until `needle` appears `occurrences` times in the container's log; a container that stops first fails
    at once (a failed boot can exit 0). Returns the seconds waited."""
    started = time.monotonic()
    while True:
        text = logs(container)
        if text.count(needle) >= occurrences:
            return time.monotonic() - started
        container.reload()
        if container.status in ("exited", "dead") or time.monotonic() - started > timeout:
            raise StartupFailed(f"{container.name} did not log {needle!r} (status {container.status}):\n{text[-3000:]}")
        time.sleep(0.2)


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned); AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def first_log_line_with(container, needles: tuple[str, ...], timeout: float) -> str | None:
    """The first log line containing any of `needles`, or None once `timeout` passed or the container stopped."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in logs(container).splitlines() if any(needle in line for needle in needles)]
        if found:
            return found[0]
        container.reload()
        if container.status in ("exited", "dead") or time.monotonic() > deadline:
            return None
        time.sleep(0.2)
