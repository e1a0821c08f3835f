"""Readiness proven by events, never by sleeping: a container is ready when it logs its readiness line."""
import time

BROKER_READY = "definitions reconciled"       # broker/boot.sh, once RabbitMQ is up and holds only what definitions say
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


def wait_for_closed_connections(broker, vhost: str, timeout: float = 60) -> None:
    """Wait until the broker has counted out every closed connection of `vhost`. RabbitMQ drops a closed connection
    from its per-user and per-vhost counts asynchronously (seen taking over 10 s on a busy 2-core machine), so a
    test that opens connections up to a limit starts only once the earlier ones are gone."""
    def settled() -> bool:
        listed = broker.exec_run(["rabbitmqctl", "-q", "list_connections", "vhost", "state", "--no-table-headers"])
        rows = [line.split("\t") for line in listed.output.decode(errors="replace").splitlines()]
        return listed.exit_code == 0 and not any(
            len(row) == 2 and row[0] == vhost and row[1].strip() in ("closing", "closed") for row in rows)
    wait_until(settled, timeout=timeout, interval=0.5, what=f"closed connections of {vhost} counted out")
