"""Build the project's images: ``python -m tools.images build`` (or ``bases``, ``wheelhouse``): broker and worker,
with ``flower = https`` the dashboard (the worker's Dockerfile with Flower's lock), and with ``result_backend =
redis`` the result store.

Base images are settings (stack.toml ``[images]``): official when present or pullable, else offline stand-ins
(tools/standins.py). The worker's wheels come from a hash-checked wheelhouse (tools/wheelhouse.py).
Every step prints its duration; a failure prints one ``ERROR: <step>: <reason>`` line and exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools import engine, settings, standins, wheelhouse
from tools.progress import StepError, say


@dataclass(frozen=True)
class BuiltImages:
    broker: str           # tag
    worker: str           # tag
    broker_id: str
    worker_id: str
    rabbitmq_base: str    # what the broker was built FROM (official or stand-in)
    python_base: str
    timings: dict
    dashboard: str | None = None      # tag, with flower = https
    results: str | None = None        # tag, with result_backend = redis


def build_images(project_dir: Path | str = settings.PROJECT_DIR) -> BuiltImages:
    """Resolve both bases, prepare the wheelhouse for the worker base's Python, build broker and worker."""
    started = time.monotonic()
    stack = settings.load(project_dir)
    client = engine.client()
    timings = {}

    mark = time.monotonic()
    rabbitmq_base = standins.resolve(client, stack.images.rabbitmq, "rabbitmq", stack)
    python_base = standins.resolve(client, stack.images.python, "python", stack)
    timings["bases"] = time.monotonic() - mark

    mark = time.monotonic()
    wheelhouse.prepare(stack.project_dir, wheelhouse.probe_target(client, python_base), lock_name(stack))
    timings["wheelhouse"] = time.monotonic() - mark

    mark = time.monotonic()
    broker_id = engine.build_image(client, f"build the broker image {stack.images.broker}",
                                   path=str(stack.project_dir), dockerfile="docker/broker/Dockerfile",
                                   tag=stack.images.broker, buildargs={"RABBITMQ_IMAGE": rabbitmq_base})
    timings["broker"] = time.monotonic() - mark

    mark = time.monotonic()
    worker_id = engine.build_image(client, f"build the worker image {stack.images.worker}",
                                   path=str(stack.project_dir), dockerfile="docker/worker/Dockerfile",
                                   tag=stack.images.worker, buildargs={"PYTHON_IMAGE": python_base})
    timings["worker"] = time.monotonic() - mark

    if stack.dashboard:
        mark = time.monotonic()
        engine.build_image(client, f"build the dashboard image {stack.images.dashboard}", path=str(stack.project_dir),
                           dockerfile="docker/worker/Dockerfile", tag=stack.images.dashboard,
                           buildargs={"PYTHON_IMAGE": python_base, "LOCK": DASHBOARD_LOCK})
        timings["dashboard"] = time.monotonic() - mark
    if stack.result_store:
        mark = time.monotonic()
        redis_base = standins.resolve(client, stack.images.redis, "redis", stack)
        engine.build_image(client, f"build the result store image {stack.images.results}", path=str(stack.project_dir),
                           dockerfile="docker/results/Dockerfile", tag=stack.images.results,
                           buildargs={"REDIS_IMAGE": redis_base})
        timings["results"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - started
    say(f"==> images ready in {timings['total']:.1f}s: {stack.images.broker} (FROM {rabbitmq_base}), "
        f"{stack.images.worker} (FROM {python_base})")
    return BuiltImages(stack.images.broker, stack.images.worker, broker_id, worker_id, rabbitmq_base, python_base,
                       {key: round(value, 1) for key, value in timings.items()},
                       stack.images.dashboard if stack.dashboard else None,
                       stack.images.results if stack.result_store else None)


DASHBOARD_LOCK = "dashboard.lock"


def lock_name(stack: settings.StackSettings) -> str:
    """The lock the wheelhouse is made from: the dashboard's (a superset of the worker's) when there is one."""
    return DASHBOARD_LOCK if stack.dashboard else "worker.lock"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.images", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "bases", "wheelhouse"])
    parser.add_argument("--project-dir", type=Path, default=settings.PROJECT_DIR,
                        help="project root holding stack.toml (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(json.dumps(build_images(args.project_dir).__dict__, indent=2))
            return 0
        stack = settings.load(args.project_dir)
        client = engine.client()
        python_base = standins.resolve(client, stack.images.python, "python", stack)
        if args.command == "bases":
            say(f"rabbitmq: {standins.resolve(client, stack.images.rabbitmq, 'rabbitmq', stack)}")
            say(f"python: {python_base}")
            if stack.result_store:
                say(f"redis: {standins.resolve(client, stack.images.redis, 'redis', stack)}")
        else:
            wheelhouse.prepare(stack.project_dir, wheelhouse.probe_target(client, python_base), lock_name(stack))
    except (StepError, settings.SettingsError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
