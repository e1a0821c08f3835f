"""Tenants cannot exhaust what others need: every queue a client may create is bounded by the broker, and each
user's connections and channels are capped inside its vhost's (TEN-01, TEN-02). Nor can they run what is not
theirs: each worker runs only the tasks of its tenant's queues, each from its own queue (TEN-03)."""
import uuid
from contextlib import ExitStack

import pika
import pytest
from pika.exceptions import ConnectionClosedByBroker, ProbableAccessDeniedError

from tests.harness.readiness import logs, wait_for_connection_room, wait_until
from tools.broker_client import death_reasons, evidence_mark, publish, read_dead_letters, task_message
from {{ cookiecutter.package_name }} import allowlist, topology

controls = pytest.mark.controls
NEAR_LIMIT = topology.MAX_MESSAGE_BYTES - 4096


def flood(channel, queue: str, count: int, size: int) -> None:
    for _ in range(count):
        channel.basic_publish("", queue, b"x" * size)      # confirmed: a refused publish raises


@controls("TEN-01")
def test_a_reply_queue_stays_bounded_whatever_its_declaration_asks(stack, vhosts, record_property):
    """The producer may declare reply-queue-shaped queues (Celery's rpc backend needs it); asking for 1 GiB in
    the declaration does not lift the broker's operator policy when results (a worker's writes) flood it."""
    with stack.endpoint.connect(vhosts[0], "producer") as connection, \
            stack.endpoint.connect(vhosts[0], "worker") as worker:
        channel, results = connection.channel(), worker.channel()
        results.confirm_delivery()
        flooded = str(uuid.uuid4())
        channel.queue_declare(flooded, auto_delete=True, arguments={"x-max-length-bytes": 2**30, "x-max-length": 10**9})
        sent = topology.REPLY_QUEUE_MAX_BYTES // NEAR_LIMIT + 4
        flood(results, flooded, sent, NEAR_LIMIT)
        kept = channel.queue_declare(flooded, passive=True).method.message_count
        channel.queue_delete(flooded)
    record_property("evidence", f"{sent} x {NEAR_LIMIT} bytes into a queue declared for 1 GiB: {kept} kept "
                                f"(bound {topology.REPLY_QUEUE_MAX_BYTES} bytes)")
    assert kept * NEAR_LIMIT <= topology.REPLY_QUEUE_MAX_BYTES and 1 <= kept < sent


@controls("TEN-01")
def test_a_tenant_cannot_create_queues_without_end(stack, vhosts, record_property):
    """Beyond the vhost's queue limit a declaration is refused; the queues the project needs exist within it."""
    declared = []
    with stack.endpoint.connect(vhosts[0], "producer") as connection:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            for _ in range(topology.VHOST_MAX_QUEUES + 1):
                name = str(uuid.uuid4())
                channel.queue_declare(name, exclusive=True)
                declared.append(name)
    record_property("evidence", f"{len(declared)} reply queues declared, then: {refused.value!r}")
    assert refused.value.reply_code == 406 and "queue limit" in refused.value.reply_text
    assert len(declared) <= topology.VHOST_MAX_QUEUES - 3            # tasks, priority and dead-letters exist


# These connections live a second or two; 15 s heartbeats (missed twice before the broker closes) cannot close them
# early, even on a loaded machine.
HELD_BRIEFLY_HEARTBEAT = 15
ROOM_FOR_LATER_TESTS = 8


@controls("TEN-02")
def test_a_producer_at_its_connection_limit_leaves_room_for_its_worker(stack, vhosts, record_property):
    endpoint, vhost = stack.endpoint, vhosts[0]
    limit = topology.USER_LIMITS["producer"]["max-connections"]
    # No wait for earlier tests' connections to be counted out: one still counted only brings the refusal sooner.
    opened, refusal = [], None
    try:
        for _ in range(limit + 1):
            try:
                # The broker counts a closed connection until the client's socket is gone, or at the latest for the
                # heartbeat interval (seen here: a closed connection counted for the full 30 s default).
                opened.append(endpoint.connect(vhost, "producer", heartbeat=HELD_BRIEFLY_HEARTBEAT))
            except ProbableAccessDeniedError as exc:
                refusal = exc
                break
        assert refusal is not None, "no producer connection was refused"
        # The legitimate path: the vhost still has room for its worker (and the worker for its own connections).
        with endpoint.connect(vhost, "worker") as worker:
            assert worker.is_open
    finally:
        for connection in opened:
            connection.close()
        # The tests after this one need a few producer connections, not all: an earlier test's connection that
        # the broker still counts (up to 30 s) need not hold this one up.
        wait_for_connection_room(stack.broker, vhost, stack.stack.topology.user_name(vhost, "producer"),
                                 room=ROOM_FOR_LATER_TESTS, limit=limit)
    record_property("evidence", f"{len(opened)} producer connections, then {refusal!r}; a worker connection opened")
    assert f"user connection limit ({limit}) is reached" in repr(refusal)


@controls("TEN-02")
def test_a_user_cannot_open_channels_without_end(stack, vhosts, record_property):
    """The channel cap counts across a user's connections (one connection alone is capped by channel_max)."""
    limit = topology.USER_LIMITS["producer"]["max-channels"]
    with stack.endpoint.connect(vhosts[0], "producer") as first, stack.endpoint.connect(vhosts[0], "producer") as second:
        channels = []
        with pytest.raises(ConnectionClosedByBroker) as refused:
            for number in range(limit + 1):                 # alternate, so neither connection meets channel_max
                channels.append((first, second)[number % 2].channel())
    record_property("evidence", f"{len(channels)} channels over two connections, then: {refused.value!r}")
    assert refused.value.reply_code == 530 and f"user limit of ({limit})" in refused.value.reply_text
    assert len(channels) <= limit


PACKAGE = "{{ cookiecutter.package_name }}"
# A valid call of one task per queue: the arguments pass validation, so only the allow-list can refuse them.
PAYMENT = (f"{PACKAGE}.tasks.payments.record_payment", {"payment_id": "ten-03", "amount_cents": 1, "currency": "EUR"})
ADDITION = (f"{PACKAGE}.tasks.arithmetic.add", {"x": 1, "y": 2})


def tenant_queues(stack, vhost: str) -> set[str]:
    """The vhost worker's allow-list, as the shipped compose.yaml gives it."""
    service = stack.project.config()["services"][stack.stack.worker_service(vhost)]
    return set(service["environment"][allowlist.ENVIRONMENT_VARIABLE].split(","))


def allow_list_cases(stack, vhosts) -> list[tuple[str, str, tuple, str | None]]:
    """(vhost, queue, task, refusal expected in the log or None for "runs") for every kind of placement."""
    payers = [v for v in vhosts if topology.PRIORITY_QUEUE in tenant_queues(stack, v)]
    others = [v for v in vhosts if v not in payers]
    cases = [(vhosts[0], topology.PRIORITY_QUEUE, ADDITION, "is not allowed on queue 'priority'"),   # line-jumping
             (vhosts[0], topology.TASK_QUEUE, ADDITION, None)]
    for vhost in payers[:1]:
        cases += [(vhost, topology.TASK_QUEUE, PAYMENT, "is not allowed on queue 'tasks'"),
                  (vhost, topology.PRIORITY_QUEUE, PAYMENT, None)]
    for vhost in others[:1]:
        cases += [(vhost, topology.PRIORITY_QUEUE, PAYMENT, "is not allowed for this tenant"),
                  (vhost, topology.TASK_QUEUE, ADDITION, None)]
    return cases


def check_outcomes(stack, sent, auditors, marks) -> list[str]:
    """Wait for each placement's outcome: run (the worker's log) or refused (its log line and dead letter)."""
    letters: dict[str, list[str]] = {}

    def dead_lettered(vhost, message_id):
        for letter in read_dead_letters(auditors[vhost], marks[vhost]):
            letters[letter.properties.message_id] = death_reasons(letter.properties)
        return message_id in letters

    evidence = []
    for vhost, queue, task, refusal, task_id, message_id in sent:
        worker = stack.workers[vhost]
        if refusal is None:
            wait_until(lambda task_id=task_id, worker=worker: f"[{task_id}] succeeded" in logs(worker), timeout=60,
                       what=f"{task} from {queue} run")
            evidence.append(f"{vhost}/{queue}/{task}: ran")
            continue
        line = wait_until(lambda worker=worker, message_id=message_id: next(
                              (line for line in logs(worker).splitlines() if f"message_id='{message_id}'" in line), None),
                          timeout=60, what=f"{task} from {queue} refused")
        assert "reason=not-allowed" in line and refusal in line, line
        assert f"[{task_id}] received" not in logs(worker), f"{task} from {queue} reached Celery"
        wait_until(lambda vhost=vhost, message_id=message_id: dead_lettered(vhost, message_id), timeout=30, what=f"{message_id} in the dead-letter queue")
        assert letters[message_id] == ["rejected"], letters
        evidence.append(f"{vhost}/{queue}/{task}: dead-lettered ({refusal})")
    return evidence


@controls("TEN-03")
def test_a_task_runs_only_for_its_tenant_and_from_its_queue(stack, vhosts, record_property):
    """Each producer publishes valid calls into its own vhost: those the allow-lists permit run; the others are
    dead-lettered as not allowed, never run, and the workers keep going."""
    marks = {}
    for vhost in vhosts:
        with stack.connect(vhost, "auditor") as auditor:
            marks[vhost] = evidence_mark(auditor)                        # the evidence from here on is this test's
    sent = []
    for number, (vhost, queue, (task, kwargs), refusal) in enumerate(allow_list_cases(stack, vhosts)):
        message_id = f"ten-03-{number}"
        body, headers, task_id = task_message(task, kwargs={**kwargs, **(
            {"payment_id": message_id} if "payment_id" in kwargs else {})})
        with stack.endpoint.connect(vhost, "producer") as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            publish(channel, queue, body, headers, message_id=message_id)
        sent.append((vhost, queue, task.rsplit(".", 1)[-1], refusal, task_id, message_id))
    with ExitStack() as held:         # one auditor connection per vhost for all polls (the auditor's limit is 2)
        auditors = {vhost: held.enter_context(stack.connect(vhost, "auditor")) for vhost in vhosts}
        evidence = check_outcomes(stack, sent, auditors, marks)
    for worker in stack.workers.values():
        worker.reload()
        assert worker.status == "running"
    record_property("evidence", "; ".join(evidence))
