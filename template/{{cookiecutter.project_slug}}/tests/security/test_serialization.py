"""JSON only: pickle/yaml/msgpack messages are never decoded, are dead-lettered, and work goes on (SER-01..03)."""

import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from tools.broker_client import (PICKLE_CANARY_PATH, PICKLE_PAYLOAD, death_reasons, evidence_mark, publish,
                                 publish_raw, read_dead_letters, task_message, wait_for_dead_letters)

controls = pytest.mark.controls
# Each payload would create the canary file if a worker deserialized it.
HOSTILE = {
    "application/x-python-serialize": PICKLE_PAYLOAD,
    "application/x-yaml": f'!!python/object/apply:os.system ["touch {PICKLE_CANARY_PATH}"]'.encode(),
    "application/x-msgpack": b"\x93\x90\x80\x80",
}
REFUSAL = "Refusing to deserialize untrusted content"
ADD = "{{ cookiecutter.package_name }}.tasks.arithmetic.add"
EVIDENCE = "dead-letters"
# What a reader of the evidence might try to destroy it with. RabbitMQ answers the first two with a connection
# error (540), which ends the connection they ran on; the third is refused on its channel alone (403).
DESTROY = {
    "purge": lambda channel: channel.queue_purge(EVIDENCE),
    "basic.get with auto-ack": lambda channel: channel.basic_get(EVIDENCE, auto_ack=True),
    "delete": lambda channel: channel.queue_delete(EVIDENCE),
}


def letters_after(stack, vhost: str, after: int, expected: int, content_types=None) -> list:
    """The letters after offset `after` (of `content_types` only, if given), once there are `expected` of them (or
    30 s have passed). An earlier test's failed tasks may still be arriving in the stream after the mark."""
    def wanted(letters):
        return [letter for letter in letters if content_types is None or letter.properties.content_type in content_types]
    with stack.connect(vhost, "auditor") as connection:
        return wanted(wait_for_dead_letters(connection, lambda letters: len(wanted(letters)) >= expected, after))


@controls("SER-01", "SER-02")
def test_non_json_messages_are_refused_dead_lettered_and_never_run(stack, vhosts, celery_client, record_property):
    published, marks = 0, {}
    for vhost in vhosts:
        with stack.connect(vhost, "auditor") as auditor:
            marks[vhost] = evidence_mark(auditor)                        # the evidence from here on is this test's
        with stack.connect(vhost, "producer") as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            for queue in ("tasks", "priority"):
                for content_type, body in HOSTILE.items():
                    publish_raw(channel, queue, body, content_type, ADD)
                    published += 1
    per_vhost = published // len(vhosts)
    evidence = []
    for vhost in vhosts:
        letters = letters_after(stack, vhost, marks[vhost], per_vhost, content_types=HOSTILE)
        reasons = sorted({reason for letter in letters for reason in death_reasons(letter.properties)})
        types = sorted({letter.properties.content_type for letter in letters})
        evidence.append(f"{vhost}: {len(letters)}/{per_vhost} dead-lettered, reasons {reasons}")
        assert len(letters) == per_vhost, evidence[-1]
        assert reasons == ["rejected"] and types == sorted(HOSTILE)
        worker = stack.workers[vhost]
        assert worker.exec_run(["test", "-e", PICKLE_CANARY_PATH]).exit_code != 0, "a payload was deserialized"
        logs = worker.logs().decode(errors="replace")
        assert logs.count(REFUSAL) >= per_vhost
        worker.reload()
        assert worker.status == "running"
    record_property("evidence", "; ".join(evidence))
    # ...and the worker still executes legitimate work afterwards.
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    assert add.delay(20, 22).get(timeout=30) == 42


@controls("SER-01")
def test_legitimate_json_task_round_trip(celery_client, record_property):
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    result = add.delay(2, 3)
    assert result.get(timeout=30) == 5
    record_property("evidence", f"add(2, 3) -> 5 over TLS as task {result.id}")


@controls("SER-03")
@pytest.mark.parametrize("serializer", ["pickle", "yaml", "msgpack"])
def test_producer_refuses_to_send_non_json(celery_client, serializer):
    from {{ cookiecutter.package_name }}.errors import ImproperlyConfigured
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    with pytest.raises(ImproperlyConfigured, match=f"refusing to use serializer '{serializer}'"):
        add.apply_async((1, 2), serializer=serializer)


def destroy_attempt(connection, action) -> str:
    try:
        action(connection.channel())
    except (ChannelClosedByBroker, ConnectionClosedByBroker) as refused:
        return f"refused {refused.reply_code} {refused.reply_text}"
    return "allowed"


@controls("SER-04")
def test_the_evidence_can_be_read_but_not_destroyed_by_its_reader(stack, vhosts, record_property):
    """The auditor reads the dead-letter stream as often as it likes (reading consumes nothing), but its purge,
    its destructive get and its delete are refused, and every letter is still there afterwards."""
    vhost = vhosts[0]
    # Two auditor connections in all, its limit: a third would wait until the broker has counted out a closed one
    # (seconds, behind Docker's port proxy). One is held throughout; the purge ends the other, the get this one.
    with stack.connect(vhost, "auditor") as auditor:
        mark = evidence_mark(auditor)
        # One fresh letter, so there is something to lose: a task no worker has, which every layer of the worker
        # refuses (so no other control's weakening keeps it out of the evidence).
        with stack.connect(vhost, "producer") as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            publish(channel, "tasks", *task_message("{{ cookiecutter.package_name }}.tasks.no_such_task")[:2])
        fresh = wait_for_dead_letters(auditor, lambda letters: len(letters) >= 1, mark)
        assert fresh, "the unknown task was not dead-lettered"
        before = [letter.offset for letter in read_dead_letters(auditor, through=fresh[-1].offset)]
        again = [letter.offset for letter in read_dead_letters(auditor, through=before[-1])]
        attempts = {"delete": destroy_attempt(auditor, DESTROY["delete"])}
        with stack.connect(vhost, "auditor") as second:
            attempts["purge"] = destroy_attempt(second, DESTROY["purge"])
        after = [letter.offset for letter in read_dead_letters(auditor, through=before[-1])]
        # Last, as it ends the held connection: a get refused with a connection error has delivered nothing.
        name = "basic.get with auto-ack"
        attempts[name] = destroy_attempt(auditor, DESTROY[name])
    record_property("evidence", f"{len(before)} letters read twice ({len(again)} the second time); the auditor's "
                                f"attempts: {attempts}; afterwards {len(after)} letters, the first {len(before)} "
                                f"unchanged: {after[:len(before)] == before}")
    # The legitimate path: reading takes nothing (later letters, e.g. an earlier test's failed tasks, may follow).
    assert again[:len(before)] == before and after[:len(before)] == before
    assert attempts["purge"].startswith("refused 540 NOT_IMPLEMENTED - queue.purge not supported by stream queues")
    assert attempts["basic.get with auto-ack"].startswith("refused 540 NOT_IMPLEMENTED - basic.get not supported")
    assert attempts["delete"].startswith(f"refused 403 ACCESS_REFUSED - configure access to queue '{EVIDENCE}'")
