"""Credentials per vhost: no guest, tenants isolated, least privilege cell by cell, secrets never leak, each
identity its own certificate (CRED-01..04, CRED-06)."""
import base64
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import docker
import pika
import pytest
from cryptography.hazmat.primitives import serialization
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError, ProbableAuthenticationError

from tests.harness.readiness import listed_connections, logs, wait_for_log
from tls import load_private_key
from tools import credentials, settings
from tools.broker_client import Endpoint, publish, read_dead_letters, task_exchange, task_message

controls = pytest.mark.controls
PROJECT_DIR = Path(__file__).resolve().parents[2]
STACK = settings.load(PROJECT_DIR)
ROLES = STACK.roles                # worker, producer, auditor; and monitor with the dashboard (flower = https)
LOGIN = STACK.login
# Connections opened and closed one after another (the auditor's limit is 2): a short heartbeat bounds how long the
# broker keeps counting one after it closed, when it misses the socket's end behind Docker's port proxy.
BRIEF_HEARTBEAT = 15
REPLY_QUEUE = "0b7c9a52-3f4e-4d7a-9c1e-2a5b6c7d8e9f"   # shaped like a Celery rpc reply queue
EVENT_QUEUE = f"celeryev.{REPLY_QUEUE}"                 # shaped like Flower's event queue
ADD = "{{ cookiecutter.package_name }}.tasks.arithmetic.add"


def refusals(attempts: dict) -> dict:
    """Run each connection attempt at once (a refused login costs about 3 s: the broker waits before it closes):
    {name: the exception it raised, or "accepted" (the connection is closed again)}."""
    def outcome(attempt):
        try:
            attempt().close()
        except Exception as exc:           # noqa: BLE001 - the refusal itself is the result
            return exc
        return "accepted"
    with ThreadPoolExecutor(len(attempts)) as pool:
        futures = {name: pool.submit(outcome, attempt) for name, attempt in attempts.items()}
    return {name: future.result() for name, future in futures.items()}


@controls("CRED-01")
def test_guest_is_refused(stack, vhosts, record_property):
    # With a project certificate (anything else ends at the TLS handshake, TLS-03): guest meets the login.
    outcomes = refusals({vhost: partial(stack.endpoint.connect, vhost, "producer", user="guest", password="guest",
                                        certificate=stack.stack.topology.user_name(vhosts[0], "producer"))
                         for vhost in ("/", vhosts[0])})
    record_property("evidence", f"guest: {outcomes}")
    assert all(isinstance(outcome, ProbableAuthenticationError) for outcome in outcomes.values()), outcomes


@controls("CRED-02")
def test_every_user_is_refused_on_every_other_vhost(stack, vhosts, record_property):
    endpoint, user_name, refusals = stack.endpoint, stack.stack.topology.user_name, 0
    for own in vhosts:
        for role in ROLES:
            with stack.connect(own, role):             # legitimate path: own vhost works
                pass
            for other in [v for v in vhosts if v != own] + ["/"]:
                with pytest.raises(ProbableAccessDeniedError):
                    endpoint.connect(other, role, user=user_name(own, role))   # its own certificate (and password)
                refusals += 1
    record_property("evidence", f"{refusals} cross-vhost logins refused, {len(vhosts) * len(ROLES)} own-vhost accepted")


@controls("CRED-02")
def test_wrong_password_is_refused(stack, vhosts, record_property):
    outcomes = refusals({role: partial(stack.endpoint.connect, vhosts[0], role, password="not-the-password-" + "x" * 30)
                         for role in ROLES})
    record_property("evidence", f"{outcomes}")
    assert all(isinstance(outcome, ProbableAuthenticationError) for outcome in outcomes.values()), outcomes


@controls("CRED-07")
@pytest.mark.xfail(LOGIN == "password", strict=True,
                   reason="password login: RabbitMQ checks a PLAIN password, not which client certificate carried it")
def test_a_certificate_logs_in_only_as_its_own_identity(stack, vhosts, record_property):
    """Every identity's certificate, presented by a client that claims to be each identity of the tenant in turn
    (with the claimed identity's password, where there are passwords): the broker's user is always the certificate's
    own. (What that user may then do is CRED-03's permission matrix.)"""
    vhost, user_name, outcomes = vhosts[0], stack.stack.topology.user_name, {}
    # One claimed identity at a time, every certificate at once: each is a different broker user (or should be), so
    # one listing of the broker's connections (a CLI node, about 2 s) tells them apart by certificate subject.
    for claimed in ROLES:
        with ExitStack() as held:
            for holder in ROLES:
                held.enter_context(stack.connect(vhost, holder, user=user_name(vhost, claimed),
                                                 certificate=user_name(vhost, holder), heartbeat=BRIEF_HEARTBEAT))
            rows = listed_connections(stack.broker, "user", "peer_cert_subject", "state") or []
        for holder in ROLES:
            outcomes[(holder, claimed)] = sorted({user for user, subject, state in rows
                                                  if subject == f"CN={user_name(vhost, holder)}" and state == "running"})
    record_property("evidence", f"(certificate, claimed identity) -> broker users seen with that certificate: {outcomes}")
    for (holder, claimed), users in outcomes.items():
        assert users == [user_name(vhost, holder)], f"{holder}'s certificate claiming {claimed}: logged in as {users}"


@controls("CRED-07")
def test_the_broker_accepts_only_the_baked_login(stack, vhosts, record_property):
    """Certificate login: a password login (SASL PLAIN) is refused before any user is looked up, whatever the
    password. Password login: a certificate alone (SASL EXTERNAL) is refused. The baked login works (legitimate).
    The broker just drops such a connection (pika sees the stream end), so the refusal is read from its log."""
    endpoint, vhost = stack.endpoint, vhosts[0]
    for role in ROLES:
        with stack.connect(vhost, role, heartbeat=BRIEF_HEARTBEAT):
            pass
    other = {"password": "a-guessed-password-" + "x" * 24} if LOGIN == "certificate" else {"certificate_only": True}
    # PLAIN is built in, so the broker knows it and refuses it; EXTERNAL's plugin is not even enabled for passwords.
    refusal = ("invalid authentication mechanism 'PLAIN'" if LOGIN == "certificate"
               else "unknown authentication mechanism 'EXTERNAL'")
    seen = logs(stack.broker).count(refusal)
    outcomes = refusals({role: partial(endpoint.connect, vhost, role, **other) for role in ROLES})
    assert all(isinstance(outcome, ProbableAuthenticationError) for outcome in outcomes.values()), outcomes
    # Logged as the broker drops the connection, before the client sees it end: 10 s is ample, and short when absent.
    wait_for_log(stack.broker, refusal, timeout=10, occurrences=seen + len(ROLES))
    line = next(line for line in reversed(logs(stack.broker).splitlines()) if refusal in line)
    record_property("evidence", f"{LOGIN} login accepted for every role of {vhost}; the other: {outcomes}; broker: "
                                f"{line.strip()[:300]}")


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
    # A real add(1, 1): it runs, so the probe leaves nothing in the dead-letter evidence other tests count.
    "publish a task via task exchange": lambda ch: (ch.confirm_delivery(),
                                                    publish(ch, "tasks", *task_message(ADD, (1, 1))[:2])),
    # The task exchange's topic permissions: a routing key that is not a task queue's name is refused outright.
    "publish via task exchange to another key": lambda ch: (ch.confirm_delivery(),
                                                            ch.basic_publish(task_exchange(), "dead-letters", b"{}")),
    "redeclare tasks queue": lambda ch: ch.queue_declare("tasks", durable=True, arguments={}),
    # if_unused/if_empty: a role that may delete gets 406 instead of 403 and the live queue survives the probe.
    "delete tasks queue": lambda ch: ch.queue_delete("tasks", if_unused=True, if_empty=True),
    "purge tasks queue": lambda ch: ch.queue_purge("tasks"),
    "declare an exchange": lambda ch: ch.exchange_declare("rogue", "fanout"),
    # The evidence is a stream, read by a consumer (with a prefetch, which streams require), never by basic.get.
    "read dead letters": lambda ch: (ch.basic_qos(prefetch_count=1), ch.basic_consume("dead-letters", lambda *_: None)),
    "declare own reply queue": lambda ch: ch.queue_declare(REPLY_QUEUE, auto_delete=True),
    # What the dashboard's monitor does to read task events (flower = https: the event exchange exists).
    **({"read task events": lambda ch: (ch.queue_declare(EVENT_QUEUE, auto_delete=True),
                                        ch.queue_bind(EVENT_QUEUE, STACK.topology.EVENT_EXCHANGE, "#"),
                                        ch.basic_get(EVENT_QUEUE)),
        "publish a task event": lambda ch: (ch.confirm_delivery(),
                                            ch.basic_publish(STACK.topology.EVENT_EXCHANGE, "task.probe", b"{}")),
        # if_unused: a role that may delete gets 406 (the dashboard's queue is bound) and the exchange survives.
        "delete the event exchange": lambda ch: ch.exchange_delete(STACK.topology.EVENT_EXCHANGE, if_unused=True),
        } if STACK.dashboard else {}),
}
# What each role may do; every other cell must be refused with 403 ACCESS_REFUSED.
ALLOWED = {
    # Purging needs only read permission in RabbitMQ, so a consumer can always purge (documented limit).
    # Workers write results to reply queues through the default exchange; producers only the task exchange.
    "worker": {"consume tasks", "publish via default exchange", "publish a task via task exchange",
               "purge tasks queue", "publish a task event"},
    "producer": {"publish a task via task exchange", "declare own reply queue"},
    "auditor": {"read dead letters"},
    # Reads the workers' task events: publishes nowhere, reads no task, result or dead letter (MON-03).
    "monitor": {"read task events"},
}


@controls("CRED-03")
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(stack, vhosts, role, record_property):
    vhost = vhosts[0]
    with stack.connect(vhost, role) as connection:
        matrix = {operation: attempt(connection, action) for operation, action in OPERATIONS.items()}
    record_property("evidence", f"{vhost}-{role}: {matrix}")
    for operation, outcome in matrix.items():
        expected = "allowed" if operation in ALLOWED[role] else "refused 403"
        assert outcome == expected, f"{role} / {operation}: {outcome}"


@controls("CRED-06")
def test_every_connection_presents_the_certificate_of_its_own_user(stack, vhosts, record_property):
    """Every identity of the stack connected at once (the running workers, and from the host each producer and
    auditor with the project's own settings): the broker sees each present its own certificate, subject = user."""
    with ExitStack() as held:
        for vhost in vhosts:
            for role in ("producer", "auditor"):
                held.enter_context(stack.connect(vhost, role))
        rows = listed_connections(stack.broker, "user", "peer_cert_subject", "state")
    assert rows is not None, "rabbitmqctl list_connections failed"
    # Open connections only: a closed one can stay listed for a while (an earlier test's, say).
    seen = {(user, subject) for user, subject, state in rows if user in stack.stack.identities and state == "running"}
    record_property("evidence", f"(user, certificate subject) as the broker lists them: {sorted(seen)}")
    assert {user for user, _ in seen} == set(stack.stack.identities)
    assert sorted(pair for pair in seen if pair[1] != f"CN={pair[0]}") == []


@controls("CRED-03")
def test_a_producer_cannot_write_into_the_evidence_queue(stack, vhosts, record_property):
    """Publish rights on the default exchange would reach every queue of the vhost, the dead-letter evidence
    included; the task exchange a producer may write to takes only the task queues' names as routing keys."""
    forged = pika.BasicProperties(message_id="forged-evidence")
    with stack.endpoint.connect(vhosts[0], "producer") as connection:
        outcomes = {exchange or "default": attempt(connection, lambda ch, exchange=exchange: (
            ch.confirm_delivery(), ch.basic_publish(exchange, "dead-letters", b"{}", forged, mandatory=True)))
            for exchange in ("", task_exchange())}
        legitimate = attempt(connection, lambda ch: (ch.confirm_delivery(),
                                                     publish(ch, "tasks", *task_message(ADD, (2, 2))[:2])))
    with stack.connect(vhosts[0], "auditor") as auditor:
        arrived = [letter.offset for letter in read_dead_letters(auditor)
                   if letter.properties.message_id == forged.message_id]
    record_property("evidence", f"a producer's publish into dead-letters through each exchange: {outcomes}; "
                                f"forged letters that arrived: {arrived}; a task through the task exchange: {legitimate}")
    assert outcomes == {"default": "refused 403", task_exchange(): "refused 403"} and not arrived
    assert legitimate == "allowed"


def key_material(path, passphrase: bytes | None = None) -> dict[str, bytes]:
    """What of a private key is unique to it, in every form it could leak in: the private scalar (raw, hex,
    base64) and the whole key in PKCS#8 and SEC1, DER and PEM. Shared headers (the PKCS#8 prefix every P-256 key
    starts with, the PEM armour) are never searched for: they would match any key in the world."""
    key = load_private_key(path, passphrase)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    forms = {"scalar": scalar, "scalar-hex": scalar.hex().encode(), "scalar-HEX": scalar.hex().upper().encode(),
             "scalar-base64": base64.b64encode(scalar)}
    for name, form in (("pkcs8", serialization.PrivateFormat.PKCS8),
                       ("sec1", serialization.PrivateFormat.TraditionalOpenSSL)):
        der = key.private_bytes(serialization.Encoding.DER, form, serialization.NoEncryption())   # holds `scalar`
        # The PEM body's second line (base64 characters 64 on): past every prefix common to all keys of the type.
        forms[f"{name}-pem-body"] = base64.b64encode(der)[64:112]
    return {f"{path.name}:{form}": value for form, value in forms.items()}


def secrets_of(project_dir, secrets_dir: Path | None = None) -> dict[str, bytes]:
    """Every secret of the project: passwords (password login: each identity's current, previous and staged one,
    also those of a test stack's copy of secrets/), each private key in every form, and the root's key and passphrase
    while they are still on this host (until the operator moves them offline)."""
    found = {f"{path.parent.name}/{path.name}": credentials.read_credential(path)[1].encode()
             for directory in {project_dir / "secrets", secrets_dir or project_dir / "secrets"}
             for path in directory.glob("*.password*")}
    for key in (project_dir / "pki").glob("*.key"):
        found.update(key_material(key))
    root = project_dir / "pki-root"
    if (root / "passphrase").exists():
        passphrase = (root / "passphrase").read_bytes().strip()
        found |= {"root passphrase": passphrase, **key_material(root / "ca.key", passphrase)}
    return found


def scan(blob: bytes, secrets: dict[str, bytes]) -> list[str]:
    return [name for name, secret in secrets.items() if secret in blob]


@controls("CRED-04")
def test_the_secret_scan_finds_each_key_in_every_form(record_property):
    """The scans below can find what they look for: a project key is found in PEM and DER, PKCS#8 and SEC1, and
    nothing is found in another (throwaway) P-256 key."""
    from tls.keys import generate_key
    stack = settings.load(PROJECT_DIR)
    key_path = Endpoint(PROJECT_DIR).certificate_files(stack.topology.user_name(stack.vhosts[0], "worker"))[1]
    material = key_material(key_path)
    key = load_private_key(key_path)
    blobs = [key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
             for form in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL)]
    blobs += [key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())]
    for blob in blobs:
        assert scan(b"noise" + blob + b"noise", material), blob[:40]
    stranger = generate_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    assert scan(stranger, secrets_of(PROJECT_DIR)) == []
    record_property("evidence", f"{len(material)} forms of {key_path.name} found in PEM/DER blobs; none in another key")


@controls("CRED-04")
def test_no_secret_in_image_layers(stack, record_property):
    client = docker.from_env()
    secrets = secrets_of(stack.project_dir, stack.endpoint.secrets_dir)
    leaks, scanned = {}, 0
    for image in (stack.stack.images.broker, stack.stack.images.worker):
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
    secrets = secrets_of(stack.project_dir, stack.endpoint.secrets_dir)
    containers = stack.services()
    for name, container in containers.items():
        container.reload()
        inspect = repr(container.attrs).encode()
        logs = container.logs()
        assert scan(inspect, secrets) == [] and scan(logs, secrets) == [], name
        assert not any(re.search(r"(?i)pass", entry.split("=")[0]) for entry in container.attrs["Config"]["Env"])
    record_property("evidence", f"{len(containers)} containers: inspect and logs free of {len(secrets)} secrets")
