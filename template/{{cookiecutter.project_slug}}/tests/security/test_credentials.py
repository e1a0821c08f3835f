"""Credentials per vhost: no guest, tenants isolated, least privilege cell by cell, secrets never leak
(CRED-01..04)."""
import re

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError, ProbableAuthenticationError

controls = pytest.mark.controls
ROLES = ("worker", "producer", "auditor")
REPLY_QUEUE = "0b7c9a52-3f4e-4d7a-9c1e-2a5b6c7d8e9f"   # shaped like a Celery rpc reply queue


@controls("CRED-01")
@pytest.mark.parametrize("vhost", ["/", "FIRST"])
def test_guest_is_refused(stack, vhosts, vhost, record_property):
    vhost = vhosts[0] if vhost == "FIRST" else vhost
    with pytest.raises(ProbableAuthenticationError) as caught:
        stack.endpoint.connect(vhost, "producer", user="guest", password="guest")
    record_property("evidence", f"guest on {vhost!r}: {caught.value!r}")


@controls("CRED-02")
def test_every_user_is_refused_on_every_other_vhost(stack, vhosts, record_property):
    endpoint, refusals = stack.endpoint, 0
    for own in vhosts:
        for role in ROLES:
            with endpoint.connect(own, role):          # legitimate path: own vhost works
                pass
            for other in [v for v in vhosts if v != own] + ["/"]:
                with pytest.raises(ProbableAccessDeniedError):
                    endpoint.connect(other, role, user=f"{own}-{role}", password=endpoint.password(own, role))
                refusals += 1
    record_property("evidence", f"{refusals} cross-vhost logins refused, {len(vhosts) * len(ROLES)} own-vhost accepted")


@controls("CRED-02")
@pytest.mark.parametrize("role", ROLES)
def test_wrong_password_is_refused(stack, vhosts, role):
    with pytest.raises(ProbableAuthenticationError):
        stack.endpoint.connect(vhosts[0], role, password="not-the-password-" + "x" * 30)


def attempt(connection, action) -> str:
    """Run one AMQP operation on a fresh channel: 'allowed' or the broker's refusal code."""
    channel = connection.channel()
    try:
        action(channel)
    except ChannelClosedByBroker as exc:
        return f"refused {exc.reply_code}"
    if channel.is_open:
        channel.close()
    return "allowed"


OPERATIONS = {
    "consume tasks": lambda ch: ch.basic_get("tasks"),
    # With confirms, a refused publish closes the channel before basic_publish returns.
    "publish via default exchange": lambda ch: (ch.confirm_delivery(), ch.basic_publish("", "no-such-queue", b"{}")),
    "redeclare tasks queue": lambda ch: ch.queue_declare("tasks", durable=True, arguments={}),
    # if_unused/if_empty: a role that may delete gets 406 instead of 403 and the live queue survives the probe.
    "delete tasks queue": lambda ch: ch.queue_delete("tasks", if_unused=True, if_empty=True),
    "purge tasks queue": lambda ch: ch.queue_purge("tasks"),
    "declare an exchange": lambda ch: ch.exchange_declare("rogue", "fanout"),
    "read dead letters": lambda ch: ch.basic_get("dead-letters"),
    "declare own reply queue": lambda ch: ch.queue_declare(REPLY_QUEUE, auto_delete=True),
}
# What each role may do; every other cell must be refused with 403 ACCESS_REFUSED.
ALLOWED = {
    # Purging needs only read permission in RabbitMQ, so a consumer can always purge (documented limit).
    "worker": {"consume tasks", "publish via default exchange", "purge tasks queue"},
    "producer": {"publish via default exchange", "declare own reply queue"},
    "auditor": {"read dead letters"},
}


@controls("CRED-03")
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(stack, vhosts, role, record_property):
    vhost = vhosts[0]
    with stack.endpoint.connect(vhost, role) as connection:
        matrix = {operation: attempt(connection, action) for operation, action in OPERATIONS.items()}
    record_property("evidence", f"{vhost}-{role}: {matrix}")
    for operation, outcome in matrix.items():
        expected = "allowed" if operation in ALLOWED[role] else "refused 403"
        assert outcome == expected, f"{role} / {operation}: {outcome}"


def secrets_of(project_dir) -> dict[str, str]:
    found = {path.name: path.read_text().strip() for path in (project_dir / "secrets").glob("*.password")}
    for key in (project_dir / "pki").glob("*.key"):
        body = "".join(line for line in key.read_text().splitlines() if "PRIVATE KEY" not in line)
        found[key.name] = body[:48]   # a distinctive slice of the base64 body
    return found


def scan(blob: bytes, secrets: dict[str, str]) -> list[str]:
    return [name for name, secret in secrets.items() if secret.encode() in blob]


@controls("CRED-04")
def test_no_secret_in_image_layers(stack, record_property):
    import docker
    client = docker.from_env()
    secrets = secrets_of(stack.project_dir)
    leaks, scanned = {}, 0
    for image in (stack.settings["images"]["broker"], stack.settings["images"]["worker"]):
        container = client.containers.create(image, command=["true"])
        try:
            blob = b"".join(container.export())
        finally:
            container.remove()
        scanned += len(blob)
        leaks[image] = scan(blob, secrets)
        history = " ".join(str(layer.get("CreatedBy")) for layer in client.images.get(image).history())
        leaks[image] += scan(history.encode(), secrets)
    record_property("evidence", f"{len(secrets)} secrets searched in {scanned // 2**20} MiB of image filesystems: {leaks}")
    assert all(found == [] for found in leaks.values()), leaks


@controls("CRED-04")
def test_no_secret_in_docker_inspect_or_logs(stack, celery_client, record_property):
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    assert add.delay(1, 1).get(timeout=30) == 2   # make sure the logs cover real work
    secrets = secrets_of(stack.project_dir)
    for container in stack.started:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        inspect = repr(wrapped.attrs).encode()
        logs = wrapped.logs()
        assert scan(inspect, secrets) == [] and scan(logs, secrets) == [], wrapped.name
        assert not any(re.search(r"(?i)pass", entry.split("=")[0]) for entry in wrapped.attrs["Config"]["Env"])
    record_property("evidence", f"{len(stack.started)} containers: inspect and logs free of {len(secrets)} secrets")
