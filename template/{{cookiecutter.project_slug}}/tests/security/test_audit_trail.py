"""LOG-02: every refusal leaves one audit event with a stable name, found in the containers' logs by the project's
own collector (python -m tools.audit), with the tenant it concerns."""
import time

import pytest
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError, ProbableAuthenticationError

from tests.harness.identities import stage_identity
from tests.harness.readiness import wait_until
from tests.security.probes import amqp_over_tls, client_context
from tools import audit
from tools.broker_client import PICKLE_PAYLOAD, publish, publish_raw, task_message

controls = pytest.mark.controls
COLLECT_TIMEOUT = 60     # the worker refuses asynchronously: wait for its lines, not for a guessed delay


def collected(stack, since: float) -> list[dict]:
    return audit.collect(stack.project, stack.stack, since)


def matching(events: list[dict], event: str, **fields) -> list[dict]:
    return [e for e in events if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]


def refused(attempt) -> bool:
    """Whether the broker refused `attempt` (a weakened stack may let it through: then there is nothing to log)."""
    try:
        attempt()
    except (ProbableAuthenticationError, ProbableAccessDeniedError, ChannelClosedByBroker):
        return True
    return False


def basic_get_tasks(stack, vhost: str) -> None:
    with stack.connect(vhost, "producer") as connection:
        connection.channel().basic_get("tasks")


def worker_verdict(stack, service: str, since: float, task_id: str) -> str | None:
    """What the worker did with a hostile message, from the lines Celery and the intake write whether or not the
    audit fields are there: "ran" (Celery ran it and it did not fail its schema), "refused-arguments" (its schema
    refused it), "refused-content" (kombu refused its content type), "dead-lettered <reason>" (the intake refused
    it for another reason); None: not decided yet."""
    lines = [text for _, text in audit.split_timestamps(
        stack.project.container(service).logs(timestamps=True, since=since)) if task_id in text]
    traced = [line for line in lines if "raised unexpected" in line or " succeeded in " in line]
    if traced:
        return "refused-arguments" if any("InvalidTaskArguments" in line for line in traced) else "ran"
    for line in lines:
        if "dead-lettered" in line:
            if "Refusing to deserialize untrusted content" in line:
                return "refused-content"
            return "dead-lettered " + line.split(" reason=", 1)[-1].split(":", 1)[0]
    return None                          # not yet taken, or received and still running


@controls("LOG-02")
def test_every_refusal_leaves_one_named_audit_event(stack, vhosts, weakening, tmp_path, record_property):
    """One of each refusal, made here: a handshake without a certificate, an unknown identity's login, a user on
    another tenant's vhost, a producer reading the task queue, and three messages the worker refuses (pickle,
    a built-in task name, arguments that fail the schema). Each refusal that happened must appear exactly once,
    named, with its tenant. Whether it happened is seen apart from the audit code (the client's error, Celery's
    own lines): a stack weakened elsewhere lets some through, and what was not refused has nothing to log."""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    since = time.time()
    tenant, other = vhosts[0], vhosts[1]
    producer = stack.stack.topology.user_name(tenant, "producer")
    service = stack.stack.worker_service(tenant)
    ghost = stage_identity(stack.endpoint, f"{tenant}-ghost", tmp_path)

    accepted, tls_detail = amqp_over_tls(stack.broker_port, client_context(stack.project_dir, with_certificate=False),
                                         stack.stack.broker_host)
    happened = {
        "tls.refused": not accepted,
        "login.refused": refused(lambda: ghost.connect(tenant).close()),
        "vhost.refused": refused(lambda: stack.endpoint.connect(other, "producer", user=producer).close()),
        "permission.refused": refused(lambda: basic_get_tasks(stack, tenant)),
    }
    assert happened["login.refused"], "an identity the broker does not know logged in"   # no weakening allows it
    with stack.connect(tenant, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        pickled = "a0000000-0000-4000-8000-00000000a001"
        publish_raw(channel, "tasks", PICKLE_PAYLOAD, "application/x-python-serialize", add.name, task_id=pickled)
        body, headers, builtin = task_message("celery.chord_unlock", ("x",))
        publish(channel, "tasks", body, headers)
        body, headers, invalid = task_message(add.name, ("not a number", 2))
        publish(channel, "tasks", body, headers)
    verdicts = wait_until(lambda: (lambda found: found if None not in found.values() else None)(
        {task_id: worker_verdict(stack, service, since, task_id) for task_id in (pickled, builtin, invalid)}),
        timeout=COLLECT_TIMEOUT, what="the worker's verdict on each hostile message")
    happened |= {"serializer.refused": verdicts[pickled] == "refused-content",
                 "header-policy.refused": verdicts[builtin] == "dead-lettered header-policy",
                 "arguments.refused": verdicts[invalid] == "refused-arguments"}

    expected = {
        "tls.refused": dict(event=audit.TLS, detail="Certificate required"),
        "login.refused": dict(event=audit.LOGIN, user=ghost.name),
        "vhost.refused": dict(event=audit.VHOST, user=producer, vhost=other, tenant=tenant),
        "permission.refused": dict(event=audit.PERMISSION, user=producer, vhost=tenant, operation="basic.get"),
        "serializer.refused": dict(event="serializer.refused", task_id=pickled, tenant=tenant),
        "header-policy.refused": dict(event="header-policy.refused", task_id=builtin, tenant=tenant),
        "arguments.refused": dict(event="arguments.refused", task_id=invalid, tenant=tenant),
    }
    if weakening is None:            # the shipped stack refuses every one: none may be skipped as "not refused"
        assert all(happened.values()), happened
    wanted = {name: want for name, want in expected.items() if happened[name]}
    # The broker writes its lines as it refuses; the worker's are in already (its verdicts were read from them).
    events = wait_until(lambda: (lambda found: found if all(matching(found, **want) for want in wanted.values())
                                 else None)(collected(stack, since)),
                        timeout=COLLECT_TIMEOUT, what="an audit event for each refusal")
    counts = {name: len(matching(events, **want)) for name, want in expected.items()}
    record_property("evidence", f"refusals that happened: {[name for name in expected if happened[name]]} "
                                f"(the worker's verdicts {verdicts}); "
                                f"events found per refusal: {counts}; e.g. "
                                f"{[matching(events, **want)[0] for want in wanted.values()][:3]}")
    assert counts == {name: int(happened[name]) for name in expected}, (counts, happened)


@controls("LOG-02")
def test_legitimate_work_leaves_no_audit_event_and_another_tenants_own_refusal_stays_out_of_this_trail(
        stack, vhosts, celery_client, record_property):
    """The twin: a task that runs, and the logins that carry it, add no event; another tenant's refusal inside its
    own vhost is in its trail and not in this tenant's (what `--tenant` prints: audit.concerns)."""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    since = time.time()
    tenant, other = vhosts[0], vhosts[1]
    result = add.delay(2, 3)
    assert result.get(timeout=60) == 5
    other_producer = stack.stack.topology.user_name(other, "producer")
    with stack.connect(other, "producer") as connection:
        with pytest.raises(ChannelClosedByBroker):
            connection.channel().basic_get("tasks")
    events = wait_until(lambda: (lambda found: found if matching(found, audit.PERMISSION, user=other_producer)
                                 else None)(collected(stack, since)),
                        timeout=COLLECT_TIMEOUT, what="the other tenant's refusal")
    trail = [e for e in events if audit.concerns(e, tenant)]
    theirs = [e for e in events if audit.concerns(e, other)]
    record_property("evidence", f"after a legitimate add (task {result.id}) and {other_producer} reading its own task "
                                f"queue: {len(events)} events; {tenant}'s trail {trail}; {other}'s trail {theirs}")
    assert trail == [], trail
    assert [(e["event"], e["tenant"], e["vhost"]) for e in theirs] == [(audit.PERMISSION, other, other)]
