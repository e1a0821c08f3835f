"""Tenants cannot exhaust what others need: every queue a client may create is bounded by the broker, and each
user's connections and channels are capped inside its vhost's (TEN-01, TEN-02)."""
import uuid

import pika
import pytest
from pika.exceptions import ConnectionClosedByBroker, ProbableAccessDeniedError

from {{ cookiecutter.package_name }} import topology

controls = pytest.mark.controls
NEAR_LIMIT = topology.MAX_MESSAGE_BYTES - 4096


def depth_after_flood(channel, queue: str, count: int, size: int) -> int:
    for _ in range(count):
        channel.basic_publish("", queue, b"x" * size)      # confirmed: a refused publish raises
    return channel.queue_declare(queue, passive=True).method.message_count


@controls("TEN-01")
def test_a_reply_queue_stays_bounded_whatever_its_declaration_asks(stack, vhosts, record_property):
    """The producer may declare reply-queue-shaped queues (Celery's rpc backend needs it); asking for 1 GiB in
    the declaration does not lift the broker's operator policy."""
    with stack.endpoint.connect(vhosts[0], "producer") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        flooded = str(uuid.uuid4())
        channel.queue_declare(flooded, auto_delete=True, arguments={"x-max-length-bytes": 2**30, "x-max-length": 10**9})
        sent = topology.REPLY_QUEUE_MAX_BYTES // NEAR_LIMIT + 4
        kept = depth_after_flood(channel, flooded, sent, NEAR_LIMIT)
        channel.queue_delete(flooded)
    record_property("evidence", f"{sent} x {NEAR_LIMIT} bytes into a queue declared for 1 GiB: {kept} kept "
                                f"(bound {topology.REPLY_QUEUE_MAX_BYTES} bytes)")
    assert kept * NEAR_LIMIT <= topology.REPLY_QUEUE_MAX_BYTES and 1 <= kept < sent


@controls("TEN-01")
def test_a_tenant_cannot_create_queues_without_end(stack, vhosts, record_property):
    """Beyond the vhost's queue limit a declaration is refused; the queues the project needs exist within it."""
    declared = []
    with stack.endpoint.connect(vhosts[0], "producer") as connection:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            for _ in range(topology.VHOST_MAX_QUEUES + 1):
                name = str(uuid.uuid4())
                channel.queue_declare(name, exclusive=True)
                declared.append(name)
    record_property("evidence", f"{len(declared)} reply queues declared, then: {refused.value!r}")
    assert refused.value.reply_code == 406 and "queue limit" in refused.value.reply_text
    assert len(declared) <= topology.VHOST_MAX_QUEUES - 3            # tasks, priority and dead-letters exist


@controls("TEN-02")
def test_a_producer_at_its_connection_limit_leaves_room_for_its_worker(stack, vhosts, record_property):
    endpoint, vhost = stack.endpoint, vhosts[0]
    opened, refusal = [], None
    try:
        for _ in range(topology.USER_LIMITS["producer"]["max-connections"] + 1):
            try:
                opened.append(endpoint.connect(vhost, "producer"))
            except ProbableAccessDeniedError as exc:
                refusal = exc
                break
        assert refusal is not None, "no producer connection was refused"
        # The legitimate path: the vhost still has room for its worker (and the worker for its own connections).
        with endpoint.connect(vhost, "worker") as worker:
            assert worker.is_open
    finally:
        for connection in opened:
            connection.close()
    record_property("evidence", f"{len(opened)} producer connections, then {refusal!r}; a worker connection opened")
    limit = topology.USER_LIMITS["producer"]["max-connections"]
    assert f"user connection limit ({limit}) is reached" in repr(refusal)


@controls("TEN-02")
def test_a_user_cannot_open_channels_without_end(stack, vhosts, record_property):
    """The channel cap counts across a user's connections (one connection alone is capped by channel_max)."""
    limit = topology.USER_LIMITS["producer"]["max-channels"]
    with stack.endpoint.connect(vhosts[0], "producer") as first, stack.endpoint.connect(vhosts[0], "producer") as second:
        channels = []
        with pytest.raises(ConnectionClosedByBroker) as refused:
            for number in range(limit + 1):                 # alternate, so neither connection meets channel_max
                channels.append((first, second)[number % 2].channel())
    record_property("evidence", f"{len(channels)} channels over two connections, then: {refused.value!r}")
    assert refused.value.reply_code == 530 and f"user limit of ({limit})" in refused.value.reply_text
    assert len(channels) <= limit
