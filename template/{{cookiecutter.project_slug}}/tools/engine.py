"""The Docker engine, through the Docker SDK: connecting (with one sentence when there is none), and
building images with condensed progress."""
from __future__ import annotations

import collections
import os
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound

from tools.progress import StepError, say, step

BUILD_TIMEOUT_SECONDS = 1800    # a build step (apt, debootstrap'd bases) may print nothing for minutes
NO_ENGINE = ("no Docker engine answers at {where} ({reason}); start one (Linux: `sudo systemctl start docker`, "
             "or `dockerd` as root; macOS/Windows: start Docker Desktop) or point DOCKER_HOST at a running engine")


def client() -> docker.DockerClient:
    """A client for the engine DOCKER_HOST names (default: the local socket), checked with a ping."""
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        engine = docker.from_env(timeout=BUILD_TIMEOUT_SECONDS)
        engine.ping()
    except DockerException as exc:
        raise StepError("connect to the Docker engine",
                        NO_ENGINE.format(where=where, reason=str(exc).splitlines()[0][:200])) from None
    return engine


def image_exists(engine: docker.DockerClient, ref: str) -> bool:
    try:
        engine.images.get(ref)
        return True
    except ImageNotFound:
        return False


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def build_image(engine: docker.DockerClient, name: str, **kwargs: Any) -> str:
    """Run a build (docker SDK `api.build` arguments), print one line per Dockerfile step, return the image id.
    HC_BUILD_VERBOSE=1 prints every output line; on failure the last 40 lines are in the StepError."""
    verbose = truthy(os.environ.get("HC_BUILD_VERBOSE"))
    tail: collections.deque[str] = collections.deque(maxlen=40)
    image_id, steps, cached = "", 0, 0
    with step(name):
        kwargs.setdefault("rm", True)
        kwargs.setdefault("forcerm", True)
        kwargs.setdefault("pull", False)        # base images are resolved (or built) beforehand, never pulled here
        for chunk in engine.api.build(decode=True, **kwargs):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise StepError(name, detail.strip() + ("\n--- last output ---\n" + "\n".join(tail) if tail else ""))
            if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            for line in (chunk.get("stream") or "").splitlines():
                line = line.rstrip()
                if not line:
                    continue
                tail.append(line)
                if line.startswith("Step "):
                    steps += 1
                    say(f"    {line[:160]}")
                elif "Using cache" in line:
                    cached += 1
                if verbose and not line.startswith("Step "):
                    say(f"      {line}")
        if not image_id:
            try:
                image_id = engine.images.get(kwargs["tag"]).id
            except (KeyError, ImageNotFound):
                raise StepError(name, "the build finished without an image\n" + "\n".join(tail)) from None
        say(f"    {steps} steps, {cached} from cache -> {kwargs.get('tag')} ({image_id[:19]})")
    return image_id
