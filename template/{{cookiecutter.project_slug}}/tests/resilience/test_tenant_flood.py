"""One tenant floods the broker with everything its credentials allow; another tenant's work keeps flowing (TEN-01,
TEN-02), with the production limits of the definitions (operator policies, queue and connection limits).

The noisy tenant's producer fills its task queue with near-1 MiB messages until the broker refuses one, declares
reply queues until the vhost's queue limit refuses one, fills each to its byte bound, and holds every connection
it may. Meanwhile the quiet tenant runs tasks end to end: every one completes, no resource alarm blocks the node,
and the latencies before and during the flood are recorded (reported, not asserted).
"""
import statistics
import threading
import time
import uuid

import pika
import pytest

from tests.harness.readiness import logs, wait_for_closed_connections
from tests.resilience.harness import ADD, celery_client
from {{ cookiecutter.package_name }} import topology

NOISY, QUIET = "noisy", "quiet"
NEAR_LIMIT = topology.MAX_MESSAGE_BYTES - 4096
ALARMS = ("memory resource limit alarm set", "disk resource limit alarm set")


def flood(endpoint) -> dict:
    """Everything the noisy tenant's producer may do, with its worker's help (only workers write results into
    reply queues); returns what was accepted and how each flood was refused."""
    outcome = {"task_bytes": 0, "reply_queues": 0}
    with endpoint.connect(NOISY, "producer") as connection, endpoint.connect(NOISY, "worker") as worker:
        channel, results = connection.channel(), worker.channel()
        channel.confirm_delivery()
        results.confirm_delivery()
        try:
            while True:                                    # the task queue: reject-publish once at its bound
                channel.basic_publish(topology.TASK_EXCHANGE, topology.TASK_QUEUE, b"x" * NEAR_LIMIT)
                outcome["task_bytes"] += NEAR_LIMIT
        except pika.exceptions.NackError as exc:
            outcome["task_queue_refusal"] = type(exc).__name__
        try:
            while True:                                    # reply queues, until the vhost's queue limit
                name = str(uuid.uuid4())
                channel.queue_declare(name, exclusive=True, arguments={"x-max-length-bytes": 2**30})
                outcome["reply_queues"] += 1
                for _ in range(topology.REPLY_QUEUE_MAX_BYTES // NEAR_LIMIT + 2):
                    results.basic_publish("", name, b"x" * NEAR_LIMIT)
        except pika.exceptions.ChannelClosedByBroker as exc:
            outcome["queue_limit_refusal"] = f"{exc.reply_code} {exc.reply_text.split(': ', 1)[-1]}"
    return outcome


def timed_calls(client, stop: threading.Event, latencies: list, failures: list) -> None:
    number = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            assert client.send_task(ADD, (number, 1)).get(timeout=60) == number + 1
            latencies.append(time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - recorded, the test fails on it
            failures.append(repr(exc))
        number += 1


@pytest.mark.live
def test_a_flooding_tenant_is_refused_while_another_keeps_working(rig, workers, clean_vhost, record_property):
    clean_vhost(NOISY), clean_vhost(QUIET)
    workers(QUIET)
    client = celery_client(rig, QUIET)
    try:
        assert client.send_task(ADD, (1, 1)).get(timeout=60) == 2     # warm: connection and reply queue exist
        before, during, failures, stop = [], [], [], threading.Event()
        for _ in range(20):
            started = time.monotonic()
            assert client.send_task(ADD, (2, 2)).get(timeout=60) == 4
            before.append(time.monotonic() - started)
        caller = threading.Thread(target=timed_calls, args=(client, stop, during, failures))
        caller.start()
        try:
            outcome = flood(rig.endpoint)
        finally:
            stop.set()
            caller.join(120)
    finally:
        client.close()
    broker_log = logs(rig.broker)
    assert "task_queue_refusal" in outcome and "queue limit" in outcome["queue_limit_refusal"], outcome
    assert failures == [] and during, failures[:3]
    assert not any(alarm in broker_log for alarm in ALARMS), "a resource alarm blocked every tenant"
    figure = (f"noisy: {outcome['task_bytes'] // 2**20} MiB into its task queue, then a publisher nack; "
              f"{outcome['reply_queues']} reply queues filled to their bound, then {outcome['queue_limit_refusal']}; "
              f"quiet: {len(during)} tasks during the flood, none failed, latency median "
              f"{statistics.median(during) * 1000:.0f} ms / max {max(during) * 1000:.0f} ms (before: median "
              f"{statistics.median(before) * 1000:.0f} ms / max {max(before) * 1000:.0f} ms); no resource alarm")
    print(figure)
    record_property("evidence", figure)


@pytest.mark.live
def test_a_worker_connects_while_its_producer_holds_every_connection_it_may(rig, workers, clean_vhost,
                                                                          record_property):
    clean_vhost(NOISY)
    held = []
    try:
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as refused:
            while True:
                held.append(rig.endpoint.connect(NOISY, "producer"))
        worker = workers(NOISY)                            # ready: connected and consuming
        assert "ready." in logs(worker)
    finally:
        for connection in held:
            connection.close()
        wait_for_closed_connections(rig.broker, NOISY)    # counted out before any later test connects
    record_property("evidence", f"producer held {len(held)} connections ({refused.value!r}); its worker started")
    assert len(held) == topology.USER_LIMITS["producer"]["max-connections"]
