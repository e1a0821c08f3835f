"""Invalid task arguments never reach a task body, name the field, are not retried; oversized messages
are refused by the broker (VAL-01..03)."""
import datetime as dt
import importlib.util
import json
import pkgutil

import pytest
from pika.exceptions import ChannelClosedByBroker

from tests import schema_oracle
from tests.harness.readiness import WORKER_READY, logs, wait_until
from tools.broker_client import death_reasons, evidence_mark, publish, read_dead_letters, task_exchange, task_message
from {{ cookiecutter.package_name }}.topology import MAX_MESSAGE_BYTES

controls = pytest.mark.controls
PACKAGE = "{{ cookiecutter.package_name }}"
ADD = f"{PACKAGE}.tasks.arithmetic.add"

# The task modules, found as the worker finds them (tasks/__init__.py), at collection time, before any app exists:
# each test below covers every task its module registers (tests/unit/test_validation.py checks that every task is in
# such a module).
TASK_MODULES = sorted(module.name for module in pkgutil.iter_modules(
    importlib.util.find_spec(f"{PACKAGE}.tasks").submodule_search_locations) if not module.name.startswith("_"))


def tasks_of(app, module: str) -> list:
    tasks = [task for name, task in sorted(app.tasks.items()) if task.__module__ == f"{PACKAGE}.tasks.{module}"]
    assert tasks, f"tasks/{module}.py registers no task"
    return tasks


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
@pytest.mark.parametrize("module", TASK_MODULES)
def test_valid_arguments_run_the_task(celery_client, module):
    """Each task's example, declared beside it, runs and gives its declared result."""
    for task in tasks_of(celery_client, module):
        assert task.example is not None, f"{task.name} declares no example (@shared_task(example=Example(...)))"
        result = celery_client.send_task(task.name, kwargs=task.example.kwargs).get(timeout=30)
        assert result == task.example.returns, task.name


@controls("VAL-01", "VAL-02")
@pytest.mark.parametrize("module", TASK_MODULES)
def test_invalid_arguments_are_refused_before_the_body_and_not_retried(stack, vhosts, celery_client, module,
                                                                       record_property):
    """Each task's example with one thing wrong (schema_oracle.invalid_variants): a required field missing, an
    unknown field, a field of the wrong type or just past a limit. Each is refused naming that field."""
    from {{ cookiecutter.package_name }}.errors import InvalidTaskArguments
    worker = stack.workers[vhosts[0]]
    sent = []
    for task in tasks_of(celery_client, module):
        schema = schema_oracle.task_schema(task)
        for invalid, field in schema_oracle.invalid_variants(schema, task.example.kwargs):
            assert not schema_oracle.accepts(schema, [], invalid), f"{task.name}: {invalid} is not invalid"
            # send_task skips the producer-side check, like a hostile client: the worker must refuse.
            sent.append((task.name, field, celery_client.send_task(task.name, kwargs=invalid)))
    evidence = []
    for name, field, result in sent:
        with pytest.raises(InvalidTaskArguments) as caught:
            result.get(timeout=60)
        message = str(caught.value)
        assert f"'{name}': {field}: " in message, message          # one thing wrong: the one error names it
        assert result.state == "FAILURE"
        # Not retried: a retry would have been a second delivery ("received") before this final failure. The
        # failure's log line comes after every earlier delivery's line in the same log, so once it is there the
        # count is final.
        failed = f"[{result.id}] raised unexpected: InvalidTaskArguments"
        wait_until(lambda failed=failed: failed in logs(worker), timeout=30, what=f"the worker's failure line for {result.id}")
        log = logs(worker)
        assert log.count(f"[{result.id}] received") == 1, f"{result.id} was delivered more than once"
        assert f"[{result.id}] retry" not in log
        evidence.append(message)
    worker.reload()
    assert worker.status == "running"
    record_property("evidence", f"{len(sent)} invalid calls refused: " + " | ".join(evidence))


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
            channel.basic_publish(task_exchange(), "tasks", body)
    record_property("evidence", f"{len(body)} bytes: {caught.value!r}")
    assert caught.value.reply_code == 406 and "larger than configured max size" in caught.value.reply_text


@controls("VAL-03")
def test_message_under_the_broker_limit_is_accepted(stack, vhosts):
    # Into a producer's reply queue, as a worker sends a result: nothing consumes it, unlike a task queue.
    with stack.endpoint.connect(vhosts[0], "producer") as connection, \
            stack.endpoint.connect(vhosts[0], "worker") as worker:
        channel, results = connection.channel(), worker.channel()
        results.confirm_delivery()
        queue = "5f0c6a1e-8b2d-4c3e-9f4a-1b2c3d4e5f60"       # a reply-queue-shaped name the producer may own
        channel.queue_declare(queue, auto_delete=True)
        results.basic_publish("", queue, b"x" * (MAX_MESSAGE_BYTES - 4096))   # confirmed, no exception
        channel.queue_delete(queue)


def forged_headers() -> dict[str, dict]:
    """name -> publish() arguments of an `add(1, 2)` message whose arguments are valid but whose headers lie."""
    now = dt.datetime.now(dt.timezone.utc)

    def message(task=ADD, reply_to=None, embed=None, **changes):
        body, headers, task_id = task_message(task, (1, 2), **changes)
        if embed is not None:
            body = json.dumps([[1, 2], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None,
                                            **embed}]).encode()
        return {"body": body, "headers": headers, "reply_to": reply_to, "task_id": task_id}

    def step(task, **options):
        return {"task": task, "args": [], "kwargs": {}, "options": options, "subtask_type": None, "immutable": False}

    return {
        "eta-a-year-ahead": message(eta=(now + dt.timedelta(days=365)).isoformat()),
        "time-limit-lifted": message(timelimit=[10**9, 10**9]),
        "shadow-name": message(shadow=f"{PACKAGE}.tasks.text.count_words"),
        "retries-forged": message(retries=99),
        "reply-into-evidence": message(reply_to="dead-letters"),
        "built-in-task": message(task="celery.backend_cleanup"),
        "chain-into-evidence": message(embed={"chain": [step(ADD, queue="dead-letters")]}),
        "callback-built-in": message(embed={"callbacks": [step("celery.backend_cleanup")]}),
        "id-breaks-log-line": message(task_id="x\nTask forged succeeded"),
        # A chord whose body would publish into the evidence (without the result store, any chord is refused).
        "chord-into-evidence": message(embed={"chord": step(ADD, queue="dead-letters")}),
    }


@controls("VAL-04")
def test_forged_task_headers_are_dead_lettered_and_never_run(stack, vhosts, record_property):
    endpoint, vhost = stack.endpoint, vhosts[0]
    worker = stack.workers[vhost]
    with stack.connect(vhost, "auditor") as auditor:
        mark = evidence_mark(auditor)                            # the evidence from here on is this test's
    messages = forged_headers()
    with endpoint.connect(vhost, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for name, spec in messages.items():
            publish(channel, "tasks", spec["body"], spec["headers"], message_id=f"forged-{name}",
                    reply_to=spec["reply_to"])
    letters: dict[str, list] = {}

    with stack.connect(vhost, "auditor") as auditor:       # one connection for all polls (auditor limit: 2)
        # This test's letters only: the forged messages, and anything written in reply to one (its task id as the
        # correlation id). Earlier tests' failed tasks may still be arriving in the stream after the mark.
        forged_task_ids = {spec["task_id"] for spec in messages.values()}
        # A stream's letters come again at every read (kept by offset); an ordinary queue's (a weakened stack's)
        # are taken by the read that delivers them, so each is kept as it comes.
        seen: dict = {}

        def all_dead_lettered():
            for letter in read_dead_letters(auditor, mark):
                seen[letter.offset if letter.offset >= 0 else ("taken", len(seen))] = letter
            letters.clear()
            for letter in seen.values():
                message_id, correlation_id = letter.properties.message_id, letter.properties.correlation_id
                if (message_id or "").startswith("forged-") or correlation_id in forged_task_ids:
                    letters.setdefault(message_id or f"reply to {correlation_id}", []).extend(
                        death_reasons(letter.properties))
            return set(letters) >= {f"forged-{name}" for name in messages}

        wait_until(all_dead_lettered, timeout=60, what="every forged message in the dead-letter queue")
    log = logs(worker)
    # Exactly the forged messages, each once and rejected: nothing the worker was tricked into writing there.
    assert letters == {f"forged-{name}": ["rejected"] for name in messages}, letters
    refusals = {}
    for name, spec in messages.items():
        line = next((line for line in log.splitlines() if f"message_id='forged-{name}'" in line), "")
        assert "reason=header-policy" in line, f"{name}: {line or 'no refusal logged'}"
        assert f"[{spec['task_id']}] received" not in log, f"{name} reached Celery"
        refusals[name] = line.split("header-policy: ", 1)[-1].rstrip('"}')[:90]
    worker.reload()
    assert worker.status == "running"
    record_property("evidence", "; ".join(f"{name}: {rule}" for name, rule in refusals.items()))


@controls("VAL-04")
def test_the_projects_own_chain_and_countdown_pass_the_header_policy(celery_client, record_property):
    from {{ cookiecutter.package_name }}.canvas import word_count_pipeline
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    assert word_count_pipeline("Hello   brave World").apply_async().get(timeout=60) == 3
    assert add.apply_async((2, 2), countdown=1).get(timeout=60) == 4
    record_property("evidence", "chain normalize_text -> count_words = 3; add(2, 2) with countdown 1 s = 4")
