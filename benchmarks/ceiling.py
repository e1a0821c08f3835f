"""Raw pika publish/consume on the same broker: the ceiling no Celery setup on this connection can beat.

Publishes `count` messages of `size` bytes to a private queue, without and with publisher confirms, then consumes
them. Two connections, as the shipped roles allow: the consumer's (the producer role, which may declare and read
UUID-named queues) declares and reads it; the publisher's (the worker role, which may write to the default
exchange, as it does for results) fills it.
"""
import time
import uuid

import pika

# The private queue is reply-queue shaped, so the project's operator policy bounds it to 16 MiB (TEN-01; the
# oldest messages beyond are dropped): stay under it. Large messages are sent in fewer copies.
MAX_BYTES_IN_FLIGHT = 12 * 2**20


def _consume(channel, queue: str, count: int, timeout: float) -> float:
    channel.basic_qos(prefetch_count=1000)
    started, received = time.perf_counter(), 0
    for method, _, _ in channel.consume(queue, auto_ack=True, inactivity_timeout=timeout):
        if method is None:
            raise TimeoutError(f"only {received} of {count} messages came back")
        received += 1
        if received == count:
            break
    channel.cancel()
    return time.perf_counter() - started


def measure(publisher: pika.ConnectionParameters, consumer: pika.ConnectionParameters, count: int, size: int,
            timeout: float = 30) -> dict:
    body = b"x" * size
    count = max(100, min(count, MAX_BYTES_IN_FLIGHT // size))
    connection = pika.BlockingConnection(consumer)
    sender = pika.BlockingConnection(publisher)
    try:
        channel, out = connection.channel(), sender.channel()
        queue = str(uuid.uuid4())
        channel.queue_declare(queue, exclusive=True)
        started = time.perf_counter()
        for _ in range(count):
            out.basic_publish("", queue, body)
        sender.process_data_events(0)
        publish = time.perf_counter() - started
        consume = _consume(channel, queue, count, timeout)
        out.confirm_delivery()
        confirmed_count = max(1, count // 5)       # one broker round trip per message: fewer suffice
        started = time.perf_counter()
        for _ in range(confirmed_count):
            out.basic_publish("", queue, body)
        confirmed = time.perf_counter() - started
        channel.queue_purge(queue)
        server = connection._impl.server_properties
        return {"count": count, "size": size, "publish_per_s": count / publish, "consume_per_s": count / consume,
                "confirmed_publish_per_s": confirmed_count / confirmed,
                "server": {"product": _text(server.get("product")), "version": _text(server.get("version")),
                           "platform": _text(server.get("platform"))}}
    finally:
        for opened in (sender, connection):
            if opened.is_open:
                opened.close()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
