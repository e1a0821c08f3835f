"""The TLS-buffer stall, on a real TLS connection over loopback: bytes decrypted but not yet read are invisible
to poll, and the worker consumer reads them on the next turn of the event loop (live proof:
tests/resilience/test_consumer_restart.py)."""
import select
import socket
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tls.certificates import create_root_ca, issue_server_certificate
from tls.keys import private_key_pem
from tls.pki_directory import cert_pem
from tests.unit.unit_app import app
from {{ cookiecutter.package_name }}.consumer import WorkerConsumer
from {{ cookiecutter.package_name }}.intake import DeadLetteringConsumer
from {{ cookiecutter.package_name }}.tls_buffer import DrainsTLSBuffer, tls_socket

FRAME = b"x" * 400                      # stands for one AMQP delivery


@pytest.fixture
def tls_pair(tmp_path: Path):
    """(client TLS socket, server TLS socket) connected over 127.0.0.1."""
    ca_key, ca_cert = create_root_ca("unit CA")
    key, cert = issue_server_certificate(ca_key, ca_cert, "localhost", ["localhost"], [])
    (tmp_path / "server.pem").write_bytes(cert_pem(cert) + private_key_pem(key))
    (tmp_path / "ca.pem").write_bytes(cert_pem(ca_cert))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.pem")
    client_context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = {}
    thread = threading.Thread(target=lambda: accepted.update(
        sock=server_context.wrap_socket(listener.accept()[0], server_side=True)))
    thread.start()
    client = client_context.wrap_socket(socket.create_connection(listener.getsockname()), server_hostname="localhost")
    thread.join(10)
    yield client, accepted["sock"]
    client.close()
    accepted["sock"].close()
    listener.close()


def test_bytes_decrypted_with_a_reply_are_invisible_to_poll(tls_pair):
    client, server = tls_pair
    server.sendall(FRAME * 3)           # a reply and two deliveries in one TLS record, as RabbitMQ sends them
    assert client.recv(len(FRAME)) == FRAME          # a synchronous call reads only its reply...
    assert client.pending() == 2 * len(FRAME)        # ...the deliveries sit decrypted in the SSL object...
    readable, _, _ = select.select([client], [], [], 0.5)
    assert readable == []                            # ...and poll says there is nothing to read


class Consumer(DrainsTLSBuffer):
    """DrainsTLSBuffer on a stand-in for Celery's consumer: a connection and a hub with its readers."""

    def __init__(self, sock):
        self.connection = SimpleNamespace(connection=SimpleNamespace(transport=SimpleNamespace(sock=sock)))
        self.reads = []
        self.hub = SimpleNamespace(readers={sock.fileno(): (self.reader, (sock,))})

    def reader(self, sock):             # the event loop's reader takes one AMQP method per call
        self.reads.append(sock.recv(len(FRAME)))


def test_the_consumer_reads_what_poll_cannot_see(tls_pair):
    client, server = tls_pair
    server.sendall(FRAME * 3)
    client.recv(len(FRAME))
    consumer = Consumer(client)
    consumer.read_tls_leftovers()
    assert consumer.reads == [FRAME, FRAME]
    assert client.pending() == 0
    consumer.read_tls_leftovers()                    # nothing pending: the reader is not called
    assert consumer.reads == [FRAME, FRAME]


def test_only_tls_sockets_are_checked():
    with socket.socket() as plain:
        assert tls_socket(SimpleNamespace(connection=SimpleNamespace(transport=SimpleNamespace(sock=plain)))) is None
    assert tls_socket(None) is None


def test_the_worker_runs_both_consumer_fixes():
    configured = app.conf.worker_consumer
    assert configured == "{{ cookiecutter.package_name }}.consumer:WorkerConsumer"
    assert issubclass(WorkerConsumer, DrainsTLSBuffer) and issubclass(WorkerConsumer, DeadLetteringConsumer)
