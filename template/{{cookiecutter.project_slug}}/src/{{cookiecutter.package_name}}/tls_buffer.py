"""Read what the TLS layer already decrypted, so a worker never stalls with deliveries sitting in its buffer.

The stall (celery issue 1960 pattern, reproduced by tests/resilience/test_consumer_restart.py): the worker's
event loop waits on the *socket* being readable. A synchronous AMQP call made outside the loop's reader, such as
`basic.consume` when a consumer is re-added (remote control, queue switching) or `basic.qos` when the prefetch
count changes (ETA tasks and retries with a countdown, autoscaling), reads its reply from the TLS socket.
OpenSSL decrypts whole records, and RabbitMQ sends the first deliveries right behind `consume-ok`, often in the
same record. py-amqp takes only the reply frame; the deliveries stay decrypted inside the SSL object, and the
kernel socket has nothing left to signal. With prefetch 1 those deliveries fill the prefetch window, so the
broker sends nothing more and the worker idles, with a full queue, until the next heartbeat makes the socket
readable again (seen: 11-29 s with broker_heartbeat = 30; it never happens over plaintext, where the bytes stay
in the kernel buffer).

Celery knows the startup case (it drains once after its first `consume`); this covers every other one: on each
turn of the event loop, if the TLS socket holds decrypted bytes, run the loop's own reader for that socket.
"""
import logging
import ssl
from typing import Any

logger = logging.getLogger(__name__)

# The reader takes one AMQP method per call; a prefetch window's worth is a handful. The bound keeps one turn of
# the loop short whatever the buffer holds (what is left is read on the next turn).
MAX_METHODS_PER_TICK = 64


def tls_socket(connection) -> ssl.SSLSocket | None:
    """The TLS socket under a kombu connection, or None (not connected, or not TLS)."""
    amqp_connection = getattr(connection, "connection", None)
    sock = getattr(getattr(amqp_connection, "transport", None), "sock", None)
    return sock if isinstance(sock, ssl.SSLSocket) else None


class DrainsTLSBuffer:
    """Mixin for Celery's worker Consumer: reads decrypted-but-unread TLS bytes the event loop cannot see."""

    connection: object     # the Consumer's kombu connection and event loop (Celery sets both)
    hub: Any

    def register_with_event_loop(self, hub):
        super().register_with_event_loop(hub)
        # A set of callbacks run before every poll; the bound method is added once even across reconnects.
        hub.on_tick.add(self.read_tls_leftovers)

    def read_tls_leftovers(self) -> None:
        sock = tls_socket(self.connection)
        if sock is None or sock.fileno() < 0 or not sock.pending():
            return
        registered = self.hub.readers.get(sock.fileno())
        if not registered:
            return
        # Rare (after a synchronous call outside the reader), and each one would have been a stall: say so.
        logger.info("reading %d decrypted TLS bytes the event loop could not see", sock.pending())
        callback, args = registered          # the loop's own reader, exactly as a readable poll would run it
        for _ in range(MAX_METHODS_PER_TICK):
            callback(*args)                   # reads one AMQP method
            if not sock.pending():            # the rest, if any, is in the kernel buffer: poll sees it
                return
