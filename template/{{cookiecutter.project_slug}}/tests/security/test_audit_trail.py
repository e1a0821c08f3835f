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


@controls("LOG-02")
def test_every_refusal_leaves_one_named_audit_event(stack, vhosts, tmp_path, record_property):
    """One of each refusal, made here: a handshake without a certificate, an unknown identity's login, a user on
    another tenant's vhost, a producer reading the task queue, and three messages the worker refuses (pickle,
    a built-in task name, arguments that fail the schema). Each must appear exactly once, named, with its tenant."""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    since = time.time()
    tenant, other = vhosts[0], vhosts[1]
    user_name = stack.stack.topology.user_name
    producer = user_name(tenant, "producer")
    ghost = stage_identity(stack.endpoint, f"{tenant}-ghost", tmp_path)

    accepted, tls_detail = amqp_over_tls(stack.broker_port, client_context(stack.project_dir, with_certificate=False),
                                         stack.stack.broker_host)
    assert not accepted, tls_detail
    with pytest.raises(ProbableAuthenticationError):
        ghost.connect(tenant)
    with pytest.raises(ProbableAccessDeniedError):
        stack.endpoint.connect(other, "producer", user=producer)
    with stack.connect(tenant, "producer") as connection:
        with pytest.raises(ChannelClosedByBroker):
            connection.channel().basic_get("tasks")
    with stack.connect(tenant, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        pickled = "a0000000-0000-4000-8000-00000000a001"
        publish_raw(channel, "tasks", PICKLE_PAYLOAD, "application/x-python-serialize", add.name, task_id=pickled)
        body, headers, builtin = task_message("celery.chord_unlock", ("x",))
        publish(channel, "tasks", body, headers)
        body, headers, invalid = task_message(add.name, ("not a number", 2))
        publish(channel, "tasks", body, headers)

    expected = {
        "tls.refused": dict(event=audit.TLS, detail="Certificate required"),
        "login.refused": dict(event=audit.LOGIN, user=ghost.name),
        "vhost.refused": dict(event=audit.VHOST, user=producer, vhost=other, tenant=tenant),
        "permission.refused": dict(event=audit.PERMISSION, user=producer, vhost=tenant, operation="basic.get"),
        "serializer.refused": dict(event="serializer.refused", task_id=pickled, tenant=tenant),
        "header-policy.refused": dict(event="header-policy.refused", task_id=builtin, tenant=tenant),
        "arguments.refused": dict(event="arguments.refused", task_id=invalid, tenant=tenant),
    }
    events = wait_until(lambda: (lambda found: found if all(matching(found, **want) for want in expected.values())
                                 else None)(collected(stack, since)),
                        timeout=COLLECT_TIMEOUT, what="an audit event for each refusal")
    counts = {name: len(matching(events, **want)) for name, want in expected.items()}
    record_property("evidence", f"events found per refusal: {counts}; e.g. "
                                f"{[matching(events, **want)[0] for want in expected.values()][:3]}")
    assert counts == dict.fromkeys(expected, 1), counts


@controls("LOG-02")
def test_legitimate_work_leaves_no_audit_event_and_a_tenants_trail_is_its_own(stack, vhosts, celery_client,
                                                                               record_property):
    """The twin: a task that runs, and the logins that carry it, add no event; the events of another tenant's
    refusal are not in this tenant's trail (`--tenant`)."""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    since = time.time()
    tenant, other = vhosts[0], vhosts[1]
    result = add.delay(2, 3)
    assert result.get(timeout=60) == 5
    other_producer = stack.stack.topology.user_name(other, "producer")
    with pytest.raises(ProbableAccessDeniedError):
        stack.endpoint.connect(tenant, "producer", user=other_producer)
    events = wait_until(lambda: matching(collected(stack, since), audit.VHOST, user=other_producer) and
                        collected(stack, since), timeout=COLLECT_TIMEOUT, what="the other tenant's refusal")
    own = [e for e in events if audit.concerns(e, tenant) and e.get("tenant") == tenant]
    about_the_task = [e for e in events if result.id in str(e.get("task_id"))]
    record_property("evidence", f"after a legitimate add (task {result.id}): {len(events)} events, "
                                f"{len(about_the_task)} about it; {other}'s refusal on {tenant}: "
                                f"{matching(events, audit.VHOST, user=other_producer)}; {tenant}'s own: {own}")
    assert about_the_task == []
    assert own == [], own
    assert [e["tenant"] for e in matching(events, audit.VHOST, user=other_producer)] == [other]
