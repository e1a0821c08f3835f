"""Task message headers are input too: every rule of header_policy.py, and the messages the project itself sends
pass them (VAL-04)."""
import datetime as dt
import uuid
from pathlib import Path
from unittest import mock

import pytest

from {{ cookiecutter.package_name }} import header_policy
from {{ cookiecutter.package_name }}.canvas import chunked_sum, word_count_pipeline
from tests.unit.unit_app import app
from {{ cookiecutter.package_name }}.tasks.arithmetic import add
from {{ cookiecutter.package_name }}.tasks.notifications import deliver_notification

pytestmark = pytest.mark.controls("VAL-04")
ADD = add.name
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
REPLY = str(uuid.uuid4())


def headers(**changes) -> dict:
    task_id = str(uuid.uuid4())
    base = {"lang": "py", "task": ADD, "id": task_id, "shadow": None, "eta": None, "expires": None, "group": None,
            "group_index": None, "retries": 0, "timelimit": [300, 240], "root_id": task_id, "parent_id": None,
            "argsrepr": "(1, 2)", "kwargsrepr": "{}", "origin": "unit", "ignore_result": False,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
    return {**base, **changes}


def check(headers_=None, properties=None, embed=None):
    return header_policy.violation(headers_ or headers(), {"reply_to": REPLY, **(properties or {})}, embed,
                                   app.tasks, now=NOW)


def step(task=ADD, **options) -> dict:
    return {"task": task, "args": [], "kwargs": {}, "options": {"task_id": str(uuid.uuid4()), "reply_to": REPLY,
                                                                **options},
            "subtask_type": None, "immutable": False}


def test_an_ordinary_message_passes():
    assert check() is None


@pytest.mark.parametrize("changes, properties, embed, rule", [
    ({"task": "celery.chord_unlock"}, {}, None, "is a Celery built-in"),
    ({"task": "celery.anything"}, {}, None, "is a Celery built-in"),
    ({"eta": (NOW + dt.timedelta(days=365)).isoformat()}, {}, None, "eta is more than 1200 s ahead"),
    ({"eta": "next tuesday"}, {}, None, "eta is not an ISO 8601 time"),
    ({"timelimit": [1e9, 1e9]}, {}, None, "hard time limit 1000000000.0 is not within (0, 300]"),
    ({"timelimit": [None, 241]}, {}, None, "soft time limit 241 is not within (0, 240]"),
    ({"timelimit": [0, None]}, {}, None, "hard time limit 0 is not within"),
    ({"shadow": "innocent.task"}, {}, None, "shadow renames the task"),
    ({"retries": 99}, {}, None, "retries 99 is not within [0, 3]"),
    ({"retries": True}, {}, None, "retries True is not within"),
    ({"lang": "js"}, {}, None, "lang is not py"),
    ({"id": "x\nFORGED LOG LINE"}, {}, None, "id is not a task id"),
    ({"root_id": "r" * 200}, {}, None, "root_id is not a task id"),
    ({"stamped_headers": ["x"], "stamps": {"x": "y"}}, {}, None, "stamping"),
    ({"group_index": 10**9}, {}, None, "group_index 1000000000 is not within [0, 10000)"),
    ({"group_index": "0; DROP"}, {}, None, "group_index 0; DROP is not within"),
    ({}, {"reply_to": "dead-letters"}, None, "reply_to 'dead-letters' is not a reply queue"),
    ({}, {}, {"chord": {"task": ADD}}, "chords are not supported"),
    ({}, {}, {"callbacks": [step("celery.backend_cleanup")]}, "callbacks: an embedded signature names task"),
    ({}, {}, {"chain": [step("os.system")]}, "chain: an embedded signature names task 'os.system'"),
    ({}, {}, {"chain": [step(queue="dead-letters")]}, "chain: an embedded signature sets options ['queue']"),
    ({}, {}, {"errbacks": [step(countdown=10**8)]}, "errbacks: an embedded signature sets options ['countdown']"),
    ({}, {}, {"chain": [step(reply_to="dead-letters")]}, "replies to a queue that is not a reply queue"),
    ({}, {}, {"chain": [dict(step(), subtask_type="group")]}, "is a nested canvas"),
    ({}, {}, {"chain": "not-a-list"}, "chain is not a list"),
])
def test_each_forged_header_is_named(changes, properties, embed, rule):
    problem = check(headers(**changes), properties, embed)
    assert problem is not None and rule in problem, problem


def test_a_chord_passes_only_where_the_backend_joins_chords_and_its_body_is_checked():
    body = dict(step(task="{{ cookiecutter.package_name }}.tasks.reports.add_totals"), options={
        "task_id": str(uuid.uuid4()), "reply_to": REPLY, "group_id": str(uuid.uuid4())})
    header = headers(group=str(uuid.uuid4()), group_index=3)

    def chord_check(embed):
        return header_policy.violation(header, {"reply_to": REPLY}, embed, app.tasks, now=NOW, chords=True)

    assert "chords are not supported" in check(header, {}, {"chord": body})       # rpc: no chord is joined
    assert chord_check({"chord": body}) is None
    assert "chord: an embedded signature names task 'os.system'" in chord_check({"chord": dict(body, task="os.system")})
    assert "chord: an embedded signature sets options ['queue']" in chord_check(
        {"chord": dict(body, options=dict(body["options"], queue="dead-letters"))})
    assert "group_id is not a task id" in chord_check({"chord": dict(body, options=dict(body["options"],
                                                                                        group_id="x\nforged"))})


def test_an_eta_never_outlasts_the_brokers_consumer_timeout():
    conf = (Path(__file__).resolve().parents[2] / "broker" / "rabbitmq.conf").read_text().splitlines()
    timeout_ms = int(next(line.split("=")[1] for line in conf if line.startswith("consumer_timeout")))
    # A task held until its ETA, then run within its time limit, is acknowledged before the broker gives up on it.
    assert (header_policy.MAX_ETA_SECONDS + app.conf.task_time_limit) * 1000 < timeout_ms


def test_the_limits_are_the_tasks_own():
    # deliver_notification retries up to 5 times: its own retry headers pass, one more does not.
    assert check(headers(task=deliver_notification.name, retries=5)) is None
    assert "retries 6" in check(headers(task=deliver_notification.name, retries=6))
    assert check(headers(eta=(NOW + dt.timedelta(seconds=header_policy.MAX_ETA_SECONDS)).isoformat())) is None
    assert check(headers(timelimit=[None, None])) is None


def sent_by_the_project(signature) -> list:
    """The messages the project's own client sends for a canvas (captured before they reach a broker)."""
    sent = []
    with mock.patch.object(app.amqp, "send_task_message", lambda producer, name, message, **_: sent.append(message)), \
            mock.patch.object(app.backend, "on_task_call", lambda *a, **k: None, create=True), \
            mock.patch.object(app.backend, "add_pending_result", lambda *a, **k: None, create=True), \
            mock.patch.object(app, "producer_or_acquire"):
        signature.apply_async()
    return sent


@pytest.mark.parametrize("signature", [word_count_pipeline("Hello World"), chunked_sum([1, 2, 3], 2),
                                       add.s(1, 2).set(countdown=60)], ids=["chain", "group", "countdown"])
def test_the_projects_own_canvas_passes(signature):
    messages = sent_by_the_project(signature)
    assert messages
    for message in messages:
        assert header_policy.violation(message.headers, message.properties, message.body[2], app.tasks) is None
{%- if cookiecutter.result_backend == "redis" %}


def test_the_projects_own_chord_passes():
    from {{ cookiecutter.package_name }}.canvas import chunked_sum_chord
    with mock.patch.object(app.backend, "apply_chord", lambda *a, **k: None), \
            mock.patch.object(app.backend, "set_chord_size", lambda *a, **k: None):
        messages = sent_by_the_project(chunked_sum_chord(list(range(10)), 5))
    assert len(messages) == 2
    for message in messages:
        assert message.body[2]["chord"]["task"].endswith("add_totals")
        assert header_policy.violation(message.headers, message.properties, message.body[2], app.tasks,
                                       chords=True) is None
{%- endif %}
