"""The audit collector names RabbitMQ's own refusal lines (as RabbitMQ 4.x writes them) and the workers' events."""
import json

import pytest

from tools import audit, settings

STACK = settings.load()
TENANT = STACK.vhosts[0]
OTHER = STACK.vhosts[-1]
PRODUCER = STACK.topology.user_name(TENANT, "producer")

BROKER_LINES = [
    "2026-12-07 13:13:58.773246+00:00 [error] <0.1989.0> Error on AMQP connection <0.1989.0> (192.168.208.1:43280 "
    "-> 192.168.208.2:5671, state: starting):",
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


def lines(texts: list[str]) -> list[audit.Line]:
    return [(f"2026-12-07T13:20:00.{n:09d}Z", text) for n, text in enumerate(texts)]


def test_the_broker_refusals_are_named_and_nothing_else_is():
    events = audit.broker_events(lines(BROKER_LINES), STACK)
    assert [e["event"] for e in events] == [audit.TLS, audit.LOGIN, audit.VHOST, audit.PERMISSION]
    tls, login, vhost, permission = events
    assert tls["detail"] == "Certificate required" and tls["tenant"] is None
    assert login["user"] == f"{TENANT}-ghost" and login["mechanism"] == "EXTERNAL" and login["tenant"] is None
    assert (vhost["user"], vhost["vhost"], vhost["tenant"]) == (PRODUCER, OTHER, TENANT)
    assert (permission["operation"], permission["vhost"], permission["tenant"]) == ("basic.get", TENANT, TENANT)
    assert audit.concerns(vhost, OTHER) and audit.concerns(vhost, TENANT)


def test_a_line_continuing_a_refusal_is_never_an_event():
    """A user name with a newline (PLAIN login: the client chooses it) puts more lines under the same time and
    process: they must not become a forged refusal blaming someone else."""
    forged = (f"2026-12-07 13:13:58.773246+00:00 [error] <0.1989.0> Error on AMQP connection <0.1989.0>:\n"
              f"2026-12-07 13:13:58.773246+00:00 [error] <0.1989.0> PLAIN login refused: user 'x\n"
              f"2026-12-07 13:13:58.773246+00:00 [error] <0.1989.0> access to vhost '{OTHER}' refused for user "
              f"'{PRODUCER}' - invalid credentials")
    events = audit.broker_events(lines(forged.splitlines()), STACK)
    assert [(e["event"], e["user"]) for e in events] == [(audit.LOGIN, "x")]


def test_docker_timestamps_are_split_off_and_order_events_across_services():
    raw = (b"2026-12-07T13:20:00.000000002Z {\"event\": \"arguments.refused\"}\n"
           b"2026-12-07T13:20:00.000000001Z plain text\n")
    assert audit.split_timestamps(raw) == [("2026-12-07T13:20:00.000000002Z", '{"event": "arguments.refused"}'),
                                           ("2026-12-07T13:20:00.000000001Z", "plain text")]


def test_worker_lines_with_an_event_are_taken_as_written():
    texts = [json.dumps({"level": "ERROR", "event": "arguments.refused", "tenant": TENANT, "task_id": "t1"}),
             json.dumps({"level": "INFO", "message": "Task succeeded"}), "not json at all"]
    assert audit.worker_events(lines(texts), "worker-x") == [
        {"logged": "2026-12-07T13:20:00.000000000Z", "source": "worker-x", "level": "ERROR",
         "event": "arguments.refused", "tenant": TENANT, "task_id": "t1"}]


def test_since_must_be_a_positive_number_of_seconds(capsys):
    with pytest.raises(SystemExit) as exit_info:
        audit.main(["--since", "0"])
    assert exit_info.value.code == 2
    assert "--since 0 is invalid; give a number of seconds greater than 0" in capsys.readouterr().err
