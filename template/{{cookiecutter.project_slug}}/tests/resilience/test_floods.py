"""Floods are refused visibly, and what was accepted still runs.

The `flood` test vhost has the production topology with small limits (x-max-length 20 per task queue,
max-connections 8), generated for the test stack only (tools.credentials.build_definitions overrides):
production definitions keep topology.QUEUE_MAX_LENGTH and VHOST_MAX_CONNECTIONS.
"""
import json
import uuid

import pika
import pytest
from amqp.exceptions import MessageNacked
from kombu.exceptions import OperationalError

from tests.harness.readiness import wait_until
from tests.resilience.harness import (ADD, FLOOD_MAX_CONNECTIONS, FLOOD_QUEUE_MAX_LENGTH, celery_client,
                                      is_running, queue_depth)
from tools.broker_client import evidence_mark, publish, read_dead_letters, task_message

VHOST = "flood"


@pytest.mark.live
def test_publishing_past_the_queue_limit_is_refused_to_the_publisher_not_dropped(rig, workers, clean_vhost,
                                                                               record_property):
    clean_vhost(VHOST)
    endpoint = rig.endpoint
    with endpoint.connect(VHOST, "auditor") as auditor:
        mark = evidence_mark(auditor)
    overflow = 10
    accepted, nacked = 0, 0
    with endpoint.connect(VHOST, "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for number in range(FLOOD_QUEUE_MAX_LENGTH + overflow):
            body, headers, _ = task_message(ADD, (number, 1))
            try:
                publish(channel, "tasks", body, headers)
                accepted += 1
            except pika.exceptions.NackError:
                nacked += 1
    assert (accepted, nacked) == (FLOOD_QUEUE_MAX_LENGTH, overflow)
    # The project's own Celery client (confirm_publish) raises too: the producer knows the task was not queued.
    client = celery_client(rig, VHOST)
    try:
        with pytest.raises(OperationalError) as refused:
            client.send_task(ADD, (1, 1))
        assert isinstance(refused.value.__cause__ or refused.value.__context__, MessageNacked)
        assert queue_depth(endpoint, VHOST, "tasks") == FLOOD_QUEUE_MAX_LENGTH
        with endpoint.connect(VHOST, "auditor") as auditor:
            assert read_dead_letters(auditor, mark) == []   # refused at the door: nothing was queued and dropped
        # Everything that was accepted is executed once a worker consumes.
        workers(VHOST)
        wait_until(lambda: queue_depth(endpoint, VHOST, "tasks") == 0, timeout=60, what="the queue to drain")
        assert client.send_task(ADD, (2, 2)).get(timeout=30) == 4     # room again
    finally:
        client.close()
    record_property("evidence", f"{accepted} accepted, {nacked} + 1 (Celery: MessageNacked) refused with a "
                                f"publisher nack at x-max-length {FLOOD_QUEUE_MAX_LENGTH}; all accepted ran")


def call_add(channel, x: int, y: int, timeout: float = 30) -> int:
    """Run `add` through an already-open producer connection: publish with a private reply queue, await the result."""
    reply_queue = str(uuid.uuid4())       # the producer may only declare uuid-named (rpc reply) queues
    channel.queue_declare(reply_queue, exclusive=True, auto_delete=True)
    body, headers, task_id = task_message(ADD, (x, y))
    publish(channel, "tasks", body, headers, reply_to=reply_queue, correlation_id=task_id)
    for method, _, payload in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=timeout):
        assert method is not None, "no result: the worker stopped working during the storm"
        reply = json.loads(payload)
        channel.cancel()
        assert reply["status"] == "SUCCESS" and reply["task_id"] == task_id, reply
        return reply["result"]


@pytest.mark.live
def test_connection_storm_is_refused_at_the_vhost_limit_while_the_worker_keeps_working(rig, workers, clean_vhost,
                                                                                     record_property):
    clean_vhost(VHOST)
    worker = workers(VHOST)
    endpoint = rig.endpoint
    opened, refusals = [], []
    try:
        opened.append(endpoint.connect(VHOST, "producer"))
        channel = opened[0].channel()
        channel.confirm_delivery()
        assert call_add(channel, 1, 2) == 3         # the worker's own connections exist (consumer and results)
        for _ in range(FLOOD_MAX_CONNECTIONS + 4):  # the storm: more connections than the whole vhost may hold
            try:
                opened.append(endpoint.connect(VHOST, "producer"))
            except pika.exceptions.AMQPConnectionError as exc:
                refusals.append(exc)
        assert refusals, "no connection was refused beyond the vhost limit"
        assert len(opened) < FLOOD_MAX_CONNECTIONS
        assert any("connection limit" in repr(exc) for exc in refusals), refusals[:1]
        # While the vhost is saturated, the worker still consumes and answers.
        assert call_add(channel, 20, 22) == 42
        assert is_running(worker)
    finally:
        for connection in opened:
            if connection.is_open:
                connection.close()
    record_property("evidence", f"{len(opened)} connections open (worker holds the rest of {FLOOD_MAX_CONNECTIONS}),"
                                f" {len(refusals)} refused: {type(refusals[0]).__name__}; worker answered during"
                                " the storm")
