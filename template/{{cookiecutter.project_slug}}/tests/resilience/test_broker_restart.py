"""A broker crash loses nothing that was accepted: durable queues, persistent messages, publisher confirms.

The broker is killed with SIGKILL (no clean shutdown) and started again. Its /var/lib/rabbitmq is a docker
volume: with the tmpfs the hardened stack used before, a restart empties the message store (tmpfs content
does not survive a container stop) and every queued task would be lost.
Side effects are read from the workers' SQLite store (a host directory), not from results: the rpc
result backend's reply queues are transient and do not survive a broker restart by design.
"""
import json

import pytest
from pika.exceptions import ProbableAccessDeniedError, ProbableAuthenticationError

from tests.harness.identities import stage_identity
from tests.harness.readiness import logs, wait_until
from tests.resilience.harness import ACTIVATE_ACCOUNT, PAYMENT_ROUTE, RECORD_PAYMENT, celery_client, count, queue_depth, shared_data_dir

VHOST = "restart"
OTHER_VHOST = "flood"                   # another test tenant, for a leftover cross-tenant grant
CONNECTED = f"Connected to amqps://{VHOST}-worker"


def publish_tasks(rig, first_id: int, count: int) -> int:
    """Half account activations (queue `tasks`), half payments (queue `priority`); returns how many were confirmed."""
    client = celery_client(rig, VHOST)
    try:
        for number in range(first_id, first_id + count, 2):
            client.send_task(ACTIVATE_ACCOUNT, (number,), ignore_result=True)     # raises unless confirmed
            client.send_task(RECORD_PAYMENT, (f"pay-{number}", 100, "EUR"), ignore_result=True, **PAYMENT_ROUTE)
        return count
    finally:
        client.close()


def side_effects(data_dir) -> int:
    return count(data_dir, "accounts") + count(data_dir, "payments")


def persistent_flags(rig) -> set[int]:
    """delivery_mode of the head message of each task queue, peeked as the worker and put back (no ack)."""
    modes = set()
    with rig.endpoint.connect(VHOST, "worker") as connection:
        channel = connection.channel()
        for queue in ("tasks", "priority"):
            method, properties, _ = channel.basic_get(queue, auto_ack=False)
            assert method is not None, f"{queue} is empty"
            modes.add(properties.delivery_mode)
            channel.basic_nack(method.delivery_tag, requeue=True)
    return modes


@pytest.mark.live
def test_confirmed_tasks_survive_a_broker_crash_and_then_all_complete(rig, workers, clean_vhost, record_property):
    clean_vhost(VHOST)
    count = 100
    accepted = publish_tasks(rig, 1, count)               # no worker yet: everything stays queued
    assert persistent_flags(rig) == {2}                   # Celery publishes persistent messages
    before = queue_depth(rig.endpoint, VHOST, "tasks") + queue_depth(rig.endpoint, VHOST, "priority")
    assert before == accepted == count

    rig.kill_broker()
    downtime = rig.start_broker_again()
    after = queue_depth(rig.endpoint, VHOST, "tasks") + queue_depth(rig.endpoint, VHOST, "priority")
    assert after == count, f"{count - after} confirmed tasks lost in the broker crash"

    data_dir = shared_data_dir(rig)
    workers(VHOST, data_dir=data_dir)
    wait_until(lambda: side_effects(data_dir) == count, timeout=120, what=f"{count} side effects")
    assert queue_depth(rig.endpoint, VHOST, "tasks") + queue_depth(rig.endpoint, VHOST, "priority") == 0
    record_property("evidence", f"{count} confirmed persistent tasks queued; broker SIGKILLed and back in "
                                f"{downtime:.1f}s; {after} still queued; {count} side effects after a worker started")


@pytest.mark.live
def test_running_worker_reconnects_over_tls_by_itself_and_drains_the_queue(rig, workers, clean_vhost,
                                                                         record_property):
    clean_vhost(VHOST)
    data_dir = shared_data_dir(rig)
    worker = workers(VHOST, data_dir=data_dir)
    assert logs(worker).count(CONNECTED) == 1
    count = 60
    worker.pause()                                       # connected but not consuming: the tasks stay queued
    try:
        publish_tasks(rig, 10_001, count)
        rig.kill_broker()
        rig.start_broker_again()
    finally:
        worker.unpause()
    wait_until(lambda: side_effects(data_dir) == count, timeout=150, what=f"{count} side effects")
    assert logs(worker).count(CONNECTED) == 2, "the worker did not reconnect by itself"
    record_property("evidence", f"worker reconnected over TLS after a broker crash and ran all {count} tasks")


@pytest.mark.live
def test_a_user_removed_from_the_definitions_is_gone_after_a_restart_on_existing_data(rig, clean_vhost, tmp_path,
                                                                                   record_property):
    """CRED-05 through a real restart: the broker's volume remembers a user an earlier definitions file created;
    the entry point removes it at boot, and the queued tasks on the same volume are still there."""
    clean_vhost(VHOST)
    path = rig.under_test.secrets_dir / "definitions.json"
    shipped = path.read_text()
    staged = stage_identity(rig.endpoint, f"{VHOST}-retired", tmp_path)
    retired = staged.name
    earlier = json.loads(shipped)
    earlier["users"].append(staged.definition(limits={}))
    earlier["permissions"].append({"user": retired, "vhost": VHOST, "configure": "^$", "write": ".*", "read": ".*"})
    # ...and grants of users that stay: the auditor also in another tenant, the producer on another exchange.
    auditor, producer = f"{VHOST}-auditor", f"{VHOST}-producer"
    earlier["permissions"].append({"user": auditor, "vhost": OTHER_VHOST, "configure": "^$", "write": "^$", "read": ".*"})
    earlier["topic_permissions"].append({"user": producer, "vhost": VHOST, "exchange": "amq.topic", "write": ".*",
                                         "read": ".*"})
    try:
        path.write_text(json.dumps(earlier))        # in place: the container's bind mount follows the same file
        rig.kill_broker()
        rig.start_broker_again()
        with staged.connect(VHOST):
            pass                                    # the earlier definitions' user and grant work
        with rig.endpoint.connect(OTHER_VHOST, "auditor", user=auditor):
            pass
        queued = publish_tasks(rig, 1, 10)
        path.write_text(shipped)                    # ...and is removed from them
        rig.kill_broker()
        downtime = rig.start_broker_again()
    finally:
        path.write_text(shipped)
    with pytest.raises(ProbableAuthenticationError) as refused:
        staged.connect(VHOST)
    with pytest.raises(ProbableAccessDeniedError):
        rig.endpoint.connect(OTHER_VHOST, "auditor", user=auditor)
    kept = queue_depth(rig.endpoint, VHOST, "tasks") + queue_depth(rig.endpoint, VHOST, "priority")
    log = logs(rig.broker)
    removal = next((line for line in log.splitlines() if f"removed: delete_user {retired}" in line), "")
    record_property("evidence", f"restarted in {downtime:.1f}s on the same volume: {kept}/{queued} queued tasks kept; "
                                f"{removal.strip()[:120]}; login: {refused.value!r}")
    assert kept == queued, "the volume was not kept: the removal proves nothing"
    assert removal, "the entry point did not log the removal"
    assert f"removed: clear_permissions {auditor} {OTHER_VHOST}" in log
    assert f"removed: clear_topic_permissions {producer} {VHOST} amq.topic" in log
