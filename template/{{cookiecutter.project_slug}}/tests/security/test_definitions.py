"""The definitions file is the whole truth about who may do what (CRED-05): a user or grant it no longer lists is
gone from the running broker, not merely absent from the file.

RabbitMQ imports definitions additively, so whatever an earlier definitions file (or an operator's rabbitmqctl)
left on the broker's data volume survives a restart or re-import. The broker's entry point (broker/boot.sh) removes
it at every boot, and `broker-boot reconcile` does on a running broker. Here a leftover user is imported inside the
broker, shown to work, then the shipped entry point's reconcile runs; the full restart on an existing data volume,
with leftover grants of users that stay, is in tests/resilience/test_broker_restart.py.
"""
import json
from pathlib import Path

import pytest
from pika.exceptions import ConnectionClosedByBroker, ProbableAuthenticationError, StreamLostError

from tests.harness.identities import stage_identity
from tests.harness.readiness import wait_until
from tools.broker_client import publish, task_message
from tools.credentials import write_private_file

controls = pytest.mark.controls
ADD = "{{ cookiecutter.package_name }}.tasks.arithmetic.add"
MOUNTED_DEFINITIONS = "/run/secrets/definitions.json"


def closed_by_broker(connection) -> bool:
    try:
        connection.process_data_events(time_limit=0.2)
    except (ConnectionClosedByBroker, StreamLostError):
        return True
    return not connection.is_open


@controls("CRED-05")
def test_a_user_the_definitions_no_longer_list_is_removed(stack, vhosts, tmp_path, record_property):
    broker, endpoint, own = stack.broker, stack.endpoint, vhosts[0]
    # A leftover user with full rights and a valid certificate of its own, as an earlier definitions file and an
    # earlier bake leave them behind (grants of users that stay are covered by the resilience suite's restart test).
    retired = stage_identity(endpoint, f"{own}-retired", tmp_path)
    leftover = {"users": [retired.definition()],
                "permissions": [{"user": retired.name, "vhost": own, "configure": ".*", "write": ".*", "read": ".*"}]}
    imported = broker.exec_run(["sh", "-c", 'printf %s "$0" > /tmp/leftover.json && '
                                "rabbitmqctl -q import_definitions /tmp/leftover.json", json.dumps(leftover)])
    assert imported.exit_code == 0, imported.output.decode(errors="replace")
    held = retired.connect(own)   # it works: its removal means something
    try:
        result = broker.exec_run(["broker-boot", "reconcile"])
        output = result.output.decode(errors="replace")
        assert result.exit_code == 0, output
        with pytest.raises(ProbableAuthenticationError) as refused:
            retired.connect(own)
        wait_until(lambda: closed_by_broker(held), timeout=30, what="the retired user's open connection closed")
    finally:
        if held.is_open:
            held.close()
    # The legitimate path: every shipped identity still logs in and a producer still sends a task.
    for role in stack.stack.roles:
        with stack.connect(own, role):
            pass
    with endpoint.connect(own, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        publish(channel, "tasks", *task_message(ADD, (1, 1))[:2])
    removed = [line.split("removed: ", 1)[1].split(" (", 1)[0] for line in output.splitlines() if "removed: " in line]
    record_property("evidence", f"after `broker-boot reconcile`: removed {removed}; the retired user's login: "
                                f"{type(refused.value).__name__}, its open connection closed; every shipped identity "
                                "still logs in")
    assert removed == [f"delete_user {retired.name}"], removed


@controls("CRED-05")
def test_definitions_rewritten_on_the_host_reach_the_running_broker(stack, record_property):
    """The README applies a changed definitions file without a restart (`python -m tools.credentials generate`,
    then `broker-boot reconcile`): the running broker must read the file as rewritten, not the one it started with.
    The file is rewritten with the same definitions, formatted differently, by the writer `generate` uses."""
    broker = stack.broker
    source = next(Path(mount["Source"]) for mount in broker.attrs["Mounts"]
                  if mount["Destination"] == MOUNTED_DEFINITIONS)
    original = source.read_text(encoding="utf-8")
    rewritten = json.dumps(json.loads(original), indent=1, sort_keys=True)
    assert rewritten != original
    try:
        write_private_file(source, rewritten)
        seen = broker.exec_run(["cat", MOUNTED_DEFINITIONS]).output.decode()
        reconciled = broker.exec_run(["broker-boot", "reconcile"])
    finally:
        write_private_file(source, original)
    record_property("evidence", f"{source.name} rewritten on the host ({len(rewritten)} bytes): the broker read "
                                f"{len(seen)} bytes, equal: {seen == rewritten}; reconcile exit {reconciled.exit_code}")
    assert seen == rewritten
    assert reconciled.exit_code == 0, reconciled.output.decode(errors="replace")
