"""The definitions file is the whole truth about who may do what (CRED-05): a user or grant it no longer lists is
gone from the running broker, not merely absent from the file.

RabbitMQ imports definitions additively, so whatever an earlier definitions file (or an operator's rabbitmqctl)
left on the broker's data volume survives a restart or re-import. The broker's entry point (broker/boot.sh) removes
it at every boot, and `broker-boot reconcile` does on a running broker. Here the leftovers are made with
rabbitmqctl inside the broker, shown to work, then the shipped entry point's reconcile runs; the full restart with
an existing data volume is in tests/resilience/test_broker_restart.py.
"""
import secrets

import pytest
from pika.exceptions import (ConnectionClosedByBroker, ProbableAccessDeniedError, ProbableAuthenticationError,
                             StreamLostError)

from tests.harness.readiness import wait_until
from tools.broker_client import publish, task_message

controls = pytest.mark.controls
ADD = "{{ cookiecutter.package_name }}.tasks.arithmetic.add"


def rabbitmqctl(broker, *args: str) -> str:
    result = broker.exec_run(["rabbitmqctl", "-q", *args])
    assert result.exit_code == 0, result.output.decode(errors="replace")
    return result.output.decode(errors="replace")


def closed_by_broker(connection) -> bool:
    try:
        connection.process_data_events(time_limit=0.2)
    except (ConnectionClosedByBroker, StreamLostError):
        return True
    return not connection.is_open


@controls("CRED-05")
def test_users_and_grants_the_definitions_no_longer_list_are_removed(stack, vhosts, record_property):
    broker, endpoint, user_name = stack.broker, stack.endpoint, stack.stack.topology.user_name
    own, other = vhosts[0], vhosts[-1]
    retired, auditor = f"{own}-retired", user_name(own, "auditor")
    password = secrets.token_urlsafe(24)
    # Leftovers: a retired user with full rights, a cross-tenant grant and a topic grant for a user that stays.
    rabbitmqctl(broker, "add_user", retired, password)
    rabbitmqctl(broker, "set_permissions", "-p", own, retired, ".*", ".*", ".*")
    if other != own:
        rabbitmqctl(broker, "set_permissions", "-p", other, auditor, "^$", "^$", ".*")
    rabbitmqctl(broker, "set_topic_permissions", "-p", own, auditor, "amq.topic", ".*", ".*")
    held = endpoint.connect(own, "producer", user=retired, password=password)   # they work, so removal means something
    if other != own:
        with endpoint.connect(other, "auditor", user=auditor, password=endpoint.password(own, "auditor")):
            pass
    try:
        result = broker.exec_run(["broker-boot", "reconcile"])
        output = result.output.decode(errors="replace")
        assert result.exit_code == 0, output
        with pytest.raises(ProbableAuthenticationError):
            endpoint.connect(own, "producer", user=retired, password=password)
        if other != own:
            with pytest.raises(ProbableAccessDeniedError):
                endpoint.connect(other, "auditor", user=auditor, password=endpoint.password(own, "auditor"))
        assert auditor not in rabbitmqctl(broker, "list_topic_permissions", "-p", own, "--no-table-headers")
        wait_until(lambda: closed_by_broker(held), timeout=30, what="the retired user's open connection closed")
    finally:
        if held.is_open:
            held.close()
    # The legitimate path: every shipped identity still logs in and a producer still sends a task.
    for role in ("worker", "producer", "auditor"):
        with endpoint.connect(own, role):
            pass
    with endpoint.connect(own, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        publish(channel, "tasks", *task_message(ADD, (1, 1))[:2])
    removed = [line.split("removed: ", 1)[1].split(" (", 1)[0] for line in output.splitlines() if "removed: " in line]
    record_property("evidence", f"after `broker-boot reconcile`: {removed}; the retired user's login refused and its "
                                "open connection closed; every shipped identity still logs in")
    assert f"delete_user {retired}" in " | ".join(removed)
