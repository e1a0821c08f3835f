"""Worker liveness for the container healthcheck: a file touched while the broker connection is up."""
import os
import time
from pathlib import Path

from celery import bootsteps

# /tmp is the container's private tmpfs (mode 0700, owned by the worker uid), not a shared temp dir.
LIVENESS_FILE = Path(os.environ.get("LIVENESS_FILE", "/tmp/worker-alive"))  # nosec B108
INTERVAL_SECONDS = 5.0
STALE_AFTER_SECONDS = 30.0


def seconds_since_alive(path: Path) -> float | None:
    """How long ago the liveness file `path` was last written; None if it was never written (not connected yet)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def liveness_problem(path: Path, never: str, stale: str) -> tuple[float | None, str | None]:
    """(seconds since `path` was written, why that makes a healthcheck fail or None): `never` if it was never
    written, `stale` (formatted with {age}) if it is older than STALE_AFTER_SECONDS. Shared by every healthcheck
    that reads a liveness file (the workers', the dashboards')."""
    age = seconds_since_alive(path)
    if age is None:
        return None, never
    return age, stale.format(age=age) if age > STALE_AFTER_SECONDS else None


class Liveness(bootsteps.StartStopStep):
    """Consumer bootstep: remote control is disabled, so `celery inspect ping` cannot serve as a probe."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None

    def start(self, consumer):
        self.beat(consumer)
        self.timer_ref = consumer.timer.call_repeatedly(INTERVAL_SECONDS, self.beat, (consumer,), priority=10)

    def beat(self, consumer):
        if consumer.connection is not None and consumer.connection.connected:
            LIVENESS_FILE.write_text(f"{time.time():.0f}\n", encoding="ascii")

    def stop(self, consumer):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
        LIVENESS_FILE.unlink(missing_ok=True)
