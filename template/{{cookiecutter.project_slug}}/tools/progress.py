"""Named steps for the host-side tools: each prints what it does and how long it took; a failure becomes a
StepError whose message names the step, so a user sees where a build stopped and why."""
from __future__ import annotations

import contextlib
import time
from typing import Iterator


class StepError(RuntimeError):
    """A named step failed; ``str()`` reads ``<step>: <reason>``."""

    def __init__(self, step_name: str, reason: str):
        super().__init__(f"{step_name}: {reason}")
        self.step = step_name
        self.reason = reason


def say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Print the start and the duration of a step; turn any failure into a StepError naming it."""
    say(f"==> {name} ...")
    started = time.monotonic()
    try:
        yield
    except StepError:
        say(f"<== {name}: FAILED after {time.monotonic() - started:.1f}s")
        raise
    except Exception as exc:  # re-raised with the step's name
        say(f"<== {name}: FAILED after {time.monotonic() - started:.1f}s")
        raise StepError(name, f"{type(exc).__name__}: {exc}") from exc
    say(f"<== {name}: done in {time.monotonic() - started:.1f}s")
