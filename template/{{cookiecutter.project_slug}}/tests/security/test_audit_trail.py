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
