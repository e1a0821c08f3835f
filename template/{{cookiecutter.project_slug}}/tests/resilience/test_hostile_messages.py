"""Hostile messages: none crashes the worker or runs code, and every one is accounted for (SER-02).

Each message of the corpus is published with publisher confirms (so it was accepted by the broker) and a
unique AMQP message_id. Afterwards every one must be found either in the vhost's dead-letter queue (read as
the auditor) or, for the few Celery discards by design, in a worker log line naming its task id. Count in ==
count accounted for, and the same worker still runs legitimate work.
"""
import zlib

import pika
import pytest

from tests.harness.readiness import logs, wait_until
from tests.resilience.harness import ADD, PACKAGE, celery_client, is_running
from tools.broker_client import (PICKLE_CANARY_PATH, PICKLE_PAYLOAD, death_reasons, evidence_mark, publish,
                                 read_dead_letters, task_message)
from {{ cookiecutter.package_name }}.topology import MAX_MESSAGE_BYTES

VHOST = "hostile"
NORMALIZE = f"{PACKAGE}.tasks.text.normalize_text"


def compression_bomb(inflated_bytes: int = 900 * 2**20) -> bytes:
    """~0.9 MB of zlib that inflates to 900 MiB: more than the worker's 512 MiB memory limit."""
    compressor, chunk = zlib.compressobj(9), bytes(2**20)
    out = [compressor.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    out.append(compressor.flush())
    return b"".join(out)


def corpus() -> dict[str, dict]:
    """name -> publish() keyword arguments. Every entry is something a holder of publish rights can send."""
    def message(task=ADD, args=(1, 2), kwargs=None, *, content_type="application/json", content_encoding="utf-8",
                body=None, **header_changes):
        body, headers, task_id = task_message(task, args, kwargs, body=body, **header_changes)
        return {"body": body, "headers": headers, "content_type": content_type,
                "content_encoding": content_encoding, "task_id": task_id}

    valid = task_message(ADD, (1, 2))[0]
    return {
        # --- bodies that do not decode ---
        "invalid-json": message(body=b'[[1, 2], {}, {"callbacks": '),
        "non-utf8": message(body=b"\xff\xfe\xfa" + valid),
        "empty-body": message(body=b""),
        "json-not-a-triple": message(body=b'{"x": 1}'),
        "json-scalar-triple": message(body=b"[1, 2, 3]"),
        "wrong-content-encoding": message(body=valid.decode().encode("utf-16"), content_encoding="gzip"),
        "compressed-garbage": message(body=b"not zlib at all", compression="application/x-gzip"),
        "compression-bomb": message(body=compression_bomb(), compression="application/x-gzip"),
        # --- content types the worker must not decode ---
        "pickle": message(body=PICKLE_PAYLOAD, content_type="application/x-python-serialize",
                          content_encoding="binary"),
        "yaml": message(body=f'!!python/object/apply:os.system ["touch {PICKLE_CANARY_PATH}"]'.encode(),
                        content_type="application/x-yaml"),
        "text-plain": message(content_type="text/plain"),
        "trusted-raw-data": message(body=b"raw bytes that are no task", content_type="application/data",
                                    content_encoding="binary"),
        "no-content-type": message(body=b"abc", content_type=None, content_encoding=None),
        # --- missing or forged protocol headers ---
        "no-headers": {**message(), "headers": None},
        "no-task-header": message(task=None),
        "no-id-header": message(id=None),
        "unknown-task": message(task="os.system", args=(f"touch {PICKLE_CANARY_PATH}",)),
        "task-name-not-a-string": message(task=7),
        "forged-eta": message(eta="not-a-date"),
        "forged-expires": message(expires={"not": "a date"}),
        "forged-timelimit": message(timelimit="abc"),
        # --- well-formed messages with arguments the schema refuses ---
        "schema-wrong-type": message(args=("1", 2)),
        "schema-unknown-kwarg": message(args=(), kwargs={"x": 1, "y": 2, "__class__": "os.system"}),
        "huge-argument-near-limit": message(NORMALIZE, args=("a" * (MAX_MESSAGE_BYTES - 4096),),
                                            argsrepr="('aaa...',)"),
    }


# Discarded by Celery by design with a log line naming the task id (not dead-lettered).
LOG_ACCOUNTED = {"expired-task": "Discarding revoked task"}


@pytest.mark.live
@pytest.mark.controls("SER-02")
def test_every_hostile_message_is_dead_lettered_or_logged_and_the_worker_survives(rig, workers, clean_vhost,
                                                                                 record_property):
    clean_vhost(VHOST)
    worker = workers(VHOST)
    endpoint = rig.endpoint
    with endpoint.connect(VHOST, "auditor") as auditor:
        mark = evidence_mark(auditor)              # the evidence from here on is this test's
    messages = corpus()
    expired = task_message(ADD, (1, 2), expires="2000-01-01T00:00:00+00:00")
    with endpoint.connect(VHOST, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()                 # every publish below was accepted by the broker
        for name, spec in messages.items():
            publish(channel, "tasks", spec["body"], spec["headers"], content_type=spec["content_type"],
                    content_encoding=spec["content_encoding"], message_id=f"corpus-{name}")
        publish(channel, "tasks", expired[0], expired[1], message_id="corpus-expired-task")
        # Over the broker's max_message_size: refused at the door, visibly (the channel is closed).
        oversize = task_message(NORMALIZE, ("a" * MAX_MESSAGE_BYTES,), argsrepr="('aaa...',)")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            publish(channel, "tasks", oversize[0], oversize[1], message_id="corpus-oversize")
        assert refused.value.reply_code == 406

    expected = {f"corpus-{name}" for name in messages}
    letters: dict[str, list[str]] = {}

    # One auditor connection for the whole wait: a connection per poll meets the auditor's limit of 2 while the
    # broker is still counting out the last ones (seen: 530 "user connection limit (2) is reached").
    with endpoint.connect(VHOST, "auditor") as auditor:
        def all_dead_lettered():
            letters.clear()
            for letter in read_dead_letters(auditor, mark):
                letters.setdefault(letter.properties.message_id, []).extend(death_reasons(letter.properties))
            return expected <= set(letters) or not is_running(worker)

        wait_until(all_dead_lettered, timeout=90, what="every hostile message in the dead-letter queue")
    worker_log = logs(worker)
    assert is_running(worker), f"the worker died:\n{worker_log[-3000:]}"
    missing = sorted(expected - set(letters))
    assert not missing, f"not dead-lettered: {missing}"
    assert set(letters) == expected, f"unexpected dead letters: {sorted(set(letters) - expected)}"
    assert all(reasons == ["rejected"] for reasons in letters.values()), letters
    assert f"Discarding revoked task: {ADD}[{expired[2]}]" in worker_log
    assert "Unrecoverable error" not in worker_log
    assert worker.exec_run(["test", "-e", PICKLE_CANARY_PATH]).exit_code != 0, "a payload was deserialized"
    # ...and each one also left a log line naming it: the intake hook's (message id) or a task failure (task id).
    for name, spec in messages.items():
        assert f"message_id='corpus-{name}'" in worker_log or f"[{spec['task_id']}] raised" in worker_log, \
            f"{name}: no log line names message corpus-{name} or task {spec['task_id']}"

    client = celery_client(rig, VHOST)
    try:
        assert client.send_task(ADD, (20, 22)).get(timeout=30) == 42
    finally:
        client.close()
    published = len(messages) + 1 + 1
    record_property("evidence", f"{published} hostile messages: {len(letters)} dead-lettered (reason rejected), "
                                f"1 discarded with a log line, 1 refused at publish (406); worker still running")
