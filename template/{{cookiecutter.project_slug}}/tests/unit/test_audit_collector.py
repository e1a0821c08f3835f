"""The audit collector names RabbitMQ's own refusal lines (as RabbitMQ 4.x writes them) and the workers' events."""
import json

from tools import audit, settings

STACK = settings.load()
TENANT = STACK.vhosts[0]
OTHER = STACK.vhosts[-1]
PRODUCER = STACK.topology.user_name(TENANT, "producer")

BROKER_LINES = [
    "2026-12-07 13:16:48.129898+00:00 [notice] <0.782.0> TLS server: In state wait_cert at "
    "tls_handshake_1_3.erl:444 generated SERVER ALERT: Fatal - Certificate required",
    "2026-12-07 13:16:48.129898+00:00 [notice] <0.782.0>  - certificate_required",
    f"2026-12-07 13:13:58.773246+00:00 [error] <0.1989.0> EXTERNAL login refused: user '{TENANT}-ghost' - "
    "invalid credentials",
    f"2026-12-07 13:13:18.579822+00:00 [error] <0.808.0> access to vhost '{OTHER}' refused for user '{PRODUCER}'",
    "2026-12-07 13:13:31.478412+00:00 [error] <0.1459.0> operation basic.get caused a channel exception "
    f"access_refused: read access to queue 'tasks' in vhost '{TENANT}' refused for user '{PRODUCER}'",
    f"2026-12-07 13:16:28.038219+00:00 [info] <0.732.0> connection 192.168.240.4:53846 -> 192.168.240.2:5671: "
    f"user '{PRODUCER}' authenticated and granted access to vhost '{TENANT}'",
]


def test_the_broker_refusals_are_named_and_nothing_else_is():
    events = audit.broker_events(BROKER_LINES, STACK)
    assert [e["event"] for e in events] == [audit.TLS, audit.LOGIN, audit.VHOST, audit.PERMISSION]
    tls, login, vhost, permission = events
    assert tls["detail"] == "Certificate required" and tls["tenant"] is None
    assert login["user"] == f"{TENANT}-ghost" and login["mechanism"] == "EXTERNAL" and login["tenant"] is None
    assert (vhost["user"], vhost["vhost"], vhost["tenant"]) == (PRODUCER, OTHER, TENANT)
    assert (permission["operation"], permission["vhost"], permission["tenant"]) == ("basic.get", TENANT, TENANT)
    assert audit.concerns(vhost, OTHER) and audit.concerns(vhost, TENANT)


def test_worker_lines_with_an_event_are_taken_as_written():
    lines = [json.dumps({"level": "WARNING", "event": "arguments.refused", "tenant": TENANT, "task_id": "t1"}),
             json.dumps({"level": "INFO", "message": "Task succeeded"}), "not json at all"]
    assert audit.worker_events(lines, "worker-x") == [
        {"source": "worker-x", "level": "WARNING", "event": "arguments.refused", "tenant": TENANT, "task_id": "t1"}]
