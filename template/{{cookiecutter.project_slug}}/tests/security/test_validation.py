"""Invalid task arguments never reach a task body, name the field, are not retried; oversized messages
are refused by the broker (VAL-01..03)."""
import json

import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.harness.readiness import WORKER_READY, logs, wait_until
from {{ cookiecutter.package_name }}.topology import MAX_MESSAGE_BYTES

controls = pytest.mark.controls
PACKAGE = "{{ cookiecutter.package_name }}"

# task -> (valid kwargs, expected result, [(invalid kwargs, field named in the error)])
CASES = {
    "arithmetic.add": ({"x": 2, "y": 3}, 5, [
        ({"x": "2", "y": 3}, "x"), ({"x": 2}, "y"), ({"x": 2, "y": 3, "z": 4}, "z"), ({"x": 10**13, "y": 1}, "x")]),
    "accounts.activate_account": ({"account_id": 7}, {"account_id": 7, "changed": True}, [
        ({"account_id": "7"}, "account_id"), ({}, "account_id"), ({"account_id": 0}, "account_id"),
        ({"account_id": 7, "admin": True}, "admin")]),
    "payments.record_payment": ({"payment_id": "p-1", "amount_cents": 100, "currency": "EUR"},
                                {"payment_id": "p-1", "recorded": True}, [
        ({"payment_id": "p-2; DROP TABLE payments", "amount_cents": 1, "currency": "EUR"}, "payment_id"),
        ({"payment_id": "p-3", "amount_cents": -5, "currency": "EUR"}, "amount_cents"),
        ({"payment_id": "p-4", "amount_cents": 5, "currency": "XXX"}, "currency"),
        ({"payment_id": "p" * 65, "amount_cents": 5, "currency": "EUR"}, "payment_id")]),
    "reports.sum_chunk": ({"numbers": [1, 2, 3]}, 6, [
        ({"numbers": list(range(1001))}, "numbers"), ({"numbers": [1, "2"]}, "numbers.1"), ({"numbers": 5}, "numbers")]),
    "text.normalize_text": ({"text": "  Hello   World "}, "hello world", [
        ({"text": "x" * 10_001}, "text"), ({"text": None}, "text")]),
    "text.count_words": ({"text": "a b c"}, 3, [({"text": ["a"]}, "text")]),
    "notifications.deliver_notification": (
        {"notification_id": "n-1", "recipient": "ops@example.com", "subject": "hi", "body": "b"},
        {"notification_id": "n-1", "queued": True}, [
            ({"notification_id": "n-2", "recipient": "not-an-address", "subject": "hi", "body": "b"}, "recipient"),
            ({"notification_id": "n-3", "recipient": "a@b.example", "subject": "", "body": "b"}, "subject")]),
}


# A module that registers a task without a schema, loaded by the worker's interpreter before Celery starts.
SCHEMALESS_TASK = f"""
from {PACKAGE}.celery_app import app


@app.task(name="{PACKAGE}.tasks.schemaless")
def schemaless(value):
    return value
"""


@controls("VAL-01")
def test_a_worker_with_a_schemaless_task_refuses_to_start(stack, vhosts, tmp_path, record_property):
    module = tmp_path / "sitecustomize.py"
    module.write_text(SCHEMALESS_TASK)
    module.chmod(0o644)
    worker = stack.run_one_off(stack.stack.worker_service(vhosts[0]), env={"PYTHONPATH": "/opt/extra:/app"},
                               volumes={str(module): "/opt/extra/sitecustomize.py:ro"})
    try:
        status = worker.wait(timeout=90)["StatusCode"]
        log = logs(worker)
    finally:
        stack.remove(worker)
    record_property("evidence", f"exit status {status}; " + next(
        (line for line in log.splitlines() if "declares no input schema" in line), log[-300:]))
    assert status != 0 and f"task '{PACKAGE}.tasks.schemaless' declares no input schema" in log
    assert WORKER_READY not in log
    # The legitimate twin: the shipped workers, whose every task has a schema, did start.
    assert all(WORKER_READY in logs(running) for running in stack.workers.values())


@controls("VAL-02")
@pytest.mark.parametrize("task", list(CASES))
def test_valid_arguments_run_the_task(celery_client, task):
    valid, expected, _ = CASES[task]
    assert celery_client.send_task(f"{PACKAGE}.tasks.{task}", kwargs=valid).get(timeout=30) == expected


@controls("VAL-01", "VAL-02")
@pytest.mark.parametrize("task", list(CASES))
def test_invalid_arguments_are_refused_before_the_body_and_not_retried(stack, vhosts, celery_client, task,
                                                                       record_property):
    from {{ cookiecutter.package_name }}.errors import InvalidTaskArguments
    worker = stack.workers[vhosts[0]]
    evidence = []
    for invalid, field in CASES[task][2]:
        # send_task skips the producer-side check, like a hostile client: the worker must refuse.
        result = celery_client.send_task(f"{PACKAGE}.tasks.{task}", kwargs=invalid)
        with pytest.raises(InvalidTaskArguments) as caught:
            result.get(timeout=60)
        message = str(caught.value)
        assert f"{field}: " in message and f"'{PACKAGE}.tasks.{task}'" in message, message
        assert result.state == "FAILURE"
        # Not retried: a retry would have been a second delivery ("received") before this final failure. The
        # failure's log line comes after every earlier delivery's line in the same log, so once it is there the
        # count is final.
        failed = f"[{result.id}] raised unexpected: InvalidTaskArguments"
        wait_until(lambda: failed in logs(worker), timeout=30, what=f"the worker's failure line for {result.id}")
        log = logs(worker)
        assert log.count(f"[{result.id}] received") == 1, f"{result.id} was delivered more than once"
        assert f"[{result.id}] retry" not in log
        evidence.append(message)
    worker.reload()
    assert worker.status == "running"
    record_property("evidence", " | ".join(evidence))


@controls("VAL-02")
def test_refused_payment_never_touched_the_store(stack, vhosts, celery_client):
    from {{ cookiecutter.package_name }}.errors import InvalidTaskArguments
    result = celery_client.send_task(f"{PACKAGE}.tasks.payments.record_payment",
                                      kwargs={"payment_id": "never-stored", "amount_cents": -1, "currency": "EUR"})
    with pytest.raises(InvalidTaskArguments):
        result.get(timeout=30)
    query = ("import sqlite3,os;p='/data/app.sqlite3';"
             "print(os.path.exists(p) and sqlite3.connect(p).execute(\"select count(*) from payments "
             "where payment_id='never-stored'\").fetchone()[0] or 0)")
    output = stack.workers[vhosts[0]].exec_run(["python3", "-c", query]).output.decode().strip()
    assert output == "0"


@controls("VAL-03")
def test_message_over_the_broker_limit_is_refused(stack, vhosts, record_property):
    body = json.dumps([["x" * MAX_MESSAGE_BYTES], {}, {}]).encode()
    with stack.endpoint.connect(vhosts[0], "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        with pytest.raises(ChannelClosedByBroker) as caught:
            channel.basic_publish("", "tasks", body)
    record_property("evidence", f"{len(body)} bytes: {caught.value!r}")
    assert caught.value.reply_code == 406 and "larger than configured max size" in caught.value.reply_text


@controls("VAL-03")
def test_message_under_the_broker_limit_is_accepted(stack, vhosts):
    with stack.endpoint.connect(vhosts[0], "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = "5f0c6a1e-8b2d-4c3e-9f4a-1b2c3d4e5f60"       # a reply-queue-shaped name the producer may own
        channel.queue_declare(queue, auto_delete=True)
        channel.basic_publish("", queue, b"x" * (MAX_MESSAGE_BYTES - 4096))   # confirmed, no exception
        channel.queue_delete(queue)
