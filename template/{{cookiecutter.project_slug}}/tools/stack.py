"""Run the compose stack: `python -m tools.stack build | up | demo [--down] | down`.

`demo` builds the images, starts compose.yaml (waiting for every healthcheck), runs a task through the first
vhost's producer, shows invalid input refused, then publishes a pickled task that would run a command if
decoded and shows it refused, dead-lettered and harmless.
"""
import argparse
import sys
import time

import docker

from tools import broker_client, images, settings
from tools.compose import ComposeError, ComposeProject
from tools.progress import StepError, step

REFUSAL_LOG_LINE = "Refusing to deserialize untrusted content"
REFUSAL_TIMEOUT_SECONDS = 60


def up(project: ComposeProject) -> None:
    with step("building images (base images: official if available, else offline stand-ins)"):
        images.build_images(project.project_dir)
    with step("starting broker and workers; waiting until every healthcheck passes"):
        project.up(capture=False)
    print_dashboards(project, settings.load(project.project_dir))


def print_dashboards(project: ComposeProject, stack: settings.StackSettings) -> None:
    """Where each tenant's dashboard (flower = https) listens: the engine picks the loopback port at each start."""
    for vhost in stack.vhosts if stack.dashboard else ():
        container = project.container(stack.dashboard_service(vhost))
        port = container.attrs["NetworkSettings"]["Ports"][f"{settings.DASHBOARD_PORT}/tcp"][0]["HostPort"]
        print(f"    {stack.dashboard_service(vhost)}: https://localhost:{port}/ (trust pki/ca.crt; user operator, "
              f"password in secrets/{stack.dashboard_service(vhost)}.password)")


def run_demo_client(project: ComposeProject, vhost: str) -> None:
    with step(f"sending tasks as {vhost}-producer (over TLS, client certificate, JSON)"):
        project.run("--profile", "tools", "run", "--rm", "--no-deps", f"producer-{vhost}", capture=False)


PICKLE_CONTENT_TYPE = "application/x-python-serialize"


def pickle_among(letters: list) -> bool:
    return any(letter.properties.content_type == PICKLE_CONTENT_TYPE for letter in letters)


def wait_for_log_line(container, needle: str, since: int) -> None:
    deadline = time.monotonic() + REFUSAL_TIMEOUT_SECONDS
    while needle not in container.logs(since=since).decode(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not log {needle!r} within {REFUSAL_TIMEOUT_SECONDS} s")
        time.sleep(0.5)


def pickle_attack(project: ComposeProject, stack: settings.StackSettings, vhost: str) -> None:
    """Publish a pickle that would run a command if deserialized; show it refused and dead-lettered."""
    with step(f"attack: publishing a pickled task message to {vhost}/tasks"):
        endpoint = broker_client.Endpoint(stack.project_dir)
        worker = project.container(stack.worker_service(vhost))
        since = int(time.time()) - 1
        with endpoint.connect(vhost, "producer") as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            # A real task name: the worker gets as far as decoding the body, where JSON-only stops it.
            broker_client.publish_raw(channel, "tasks", broker_client.PICKLE_PAYLOAD, PICKLE_CONTENT_TYPE,
                                      f"{stack.package}.tasks.arithmetic.add")
        wait_for_log_line(worker, REFUSAL_LOG_LINE, since)
        print(f"    worker log: '{REFUSAL_LOG_LINE} of type ...' (the message was never decoded)")
        canary = worker.exec_run(["test", "-e", broker_client.PICKLE_CANARY_PATH]).exit_code == 0
        print(f"    canary {broker_client.PICKLE_CANARY_PATH} in the worker: {'PRESENT (!)' if canary else 'absent'}")
        with endpoint.connect(vhost, "auditor") as connection:
            letters = broker_client.wait_for_dead_letters(connection, pickle_among, timeout=REFUSAL_TIMEOUT_SECONDS)
        print(f"    dead-letters stream (read as {vhost}-auditor, who cannot purge it) holds {len(letters)} message(s):")
        for letter in letters:
            # The forged invalid call is here too: a failed task is dead-lettered, not acked away.
            print(f"      offset {letter.offset}: {letter.properties.content_type}, {len(letter.body)} bytes, x-death "
                  f"reasons {broker_client.death_reasons(letter.properties)}")
        worker.reload()
        print(f"    worker still running: {worker.status}")
    if canary or not pickle_among(letters) or worker.status != "running":
        raise RuntimeError("the pickle attack was not contained")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "up", "demo", "down"])
    parser.add_argument("--down", action="store_true", help="with demo: tear the stack down afterwards")
    args = parser.parse_args(argv)
    try:
        stack = settings.load()
        project = ComposeProject(stack.project_dir, stack.project)
        if args.command == "build":
            images.build_images(stack.project_dir)
        elif args.command == "up":
            up(project)
        elif args.command == "down":
            project.down(capture=False)
        else:
            try:
                up(project)
                run_demo_client(project, stack.vhosts[0])
                pickle_attack(project, stack, stack.vhosts[0])
            finally:
                if args.down:                 # also after a failure: a half-run demo leaves nothing running
                    project.down(capture=False)
            if not args.down:
                print("The stack is still up. Stop it with: python -m tools.stack down")
    except (ComposeError, StepError, RuntimeError, settings.SettingsError, docker.errors.DockerException) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
