"""Readiness proven by events, never by sleeping: a container is ready when it logs its readiness line."""
import time

BROKER_READY = "definitions reconciled"       # broker/boot.sh, once RabbitMQ is up and holds only what definitions say
WORKER_READY = " ready."                      # Celery's worker, once it consumes
DASHBOARD_READY = "dashboard receiving task events"   # src/<package>/dashboard.py, once its event queue is bound
RESULTS_READY = "Ready to accept connections tls"     # the result store (result_backend = redis), on its TLS port


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


def listed_connections(broker, *columns: str) -> list[list[str]] | None:
    """`rabbitmqctl list_connections <columns>` as rows, or None if the CLI failed this time."""
    listed = broker.exec_run(["rabbitmqctl", "-q", "list_connections", *columns, "--no-table-headers"])
    if listed.exit_code != 0:
        return None
    rows = [[cell.strip() for cell in line.split("\t")] for line in listed.output.decode(errors="replace").splitlines()]
    return [row for row in rows if len(row) == len(columns)]


def wait_for_closed_connections(broker, vhost: str, timeout: float = 60) -> None:
    """Wait until the broker has counted out every closed connection of `vhost`. RabbitMQ drops a closed connection
    from its per-user and per-vhost counts asynchronously (seen taking over 10 s on a busy 2-core machine), so a
    test that opens connections up to a limit starts only once the earlier ones are gone."""
    def settled() -> bool:
        rows = listed_connections(broker, "vhost", "state")
        return rows is not None and not any(row == [vhost, "closing"] or row == [vhost, "closed"] for row in rows)
    wait_until(settled, timeout=timeout, interval=0.5, what=f"closed connections of {vhost} counted out")


def wait_for_connection_room(broker, vhost: str, user: str, room: int, limit: int, timeout: float = 60) -> None:
    """Wait until `user` may open `room` more connections to `vhost` under its `limit`, counting every connection
    the broker still counts (closed ones included, see wait_for_closed_connections)."""
    def has_room() -> bool:
        rows = listed_connections(broker, "vhost", "user")
        return rows is not None and rows.count([vhost, user]) <= limit - room
    wait_until(has_room, timeout=timeout, interval=0.5, what=f"room for {room} more connections of {user} in {vhost}")
