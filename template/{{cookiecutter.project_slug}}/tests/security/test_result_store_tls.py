"""The result store (result_backend = redis) listens only over TLS, requires a client certificate of the project CA,
and its clients check its host name (RES-01)."""
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.harness.scratch import ScratchFiles
from tests.security.probes import is_loopback, legacy_context, listeners
from tests.security.result_store_clients import PORT, no_store, store, user
from tls import issue_server_certificate, load_ca
from tls.keys import private_key_pem

controls = pytest.mark.controls
CERTIFICATE_REQUIRED = "TLSV13_ALERT_CERTIFICATE_REQUIRED"   # the store's alert to a client without a certificate


@controls("RES-01")
def test_the_result_store_listens_only_over_tls(stack, vhosts, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    # Loopback sockets aside (the engine's DNS resolver listens on 127.0.0.11 in every container).
    sockets = {port for address, port in listeners(stack.results) if not is_loopback(address)}
    assert sockets == {PORT}, f"the result store listens on {sorted(sockets)}, not on its TLS port alone"
    # A plaintext client gets no reply in Redis's protocol: the port speaks TLS only.
    with socket.create_connection(("127.0.0.1", stack.results_port), timeout=10) as raw:
        raw.sendall(b"PING\r\n")
        try:
            reply = raw.recv(4096)
        except OSError as exc:
            reply = repr(exc).encode()
    assert not reply.startswith((b"+", b"-")), f"the store answered a plaintext command: {reply[:80]!r}"
    # Nor TLS 1.1, which the client offers as its only version.
    with socket.create_connection(("127.0.0.1", stack.results_port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError) as old:
        legacy_context(stack.project_dir, ssl.TLSVersion.TLSv1_1).wrap_socket(raw, server_hostname="127.0.0.1")
    # The legitimate path: a user over TLS 1.2+ with its certificate.
    assert store(stack, user(stack, vhosts[0], "worker")).ping() is True
    record_property("evidence", f"listening only on {sorted(sockets)} (TLS); a plaintext PING got {reply[:40]!r}; "
                                f"TLS 1.1 refused ({old.value.reason}); a user over TLS: PONG")


@controls("RES-01")
def test_a_client_without_a_project_certificate_is_refused(stack, vhosts, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    import redis
    identity = user(stack, vhosts[0], "worker")
    # The right user and password, but no certificate: the handshake fails before a word of Redis is spoken.
    with pytest.raises(redis.ConnectionError) as refused:
        store(stack, identity, certificate=None).ping()
    assert CERTIFICATE_REQUIRED in str(refused.value), refused.value
    assert "peer did not return a certificate" in stack.results.logs(tail=50).decode(errors="replace")
    assert store(stack, identity).ping() is True          # the legitimate twin: the same login with its certificate
    record_property("evidence", f"no client certificate: {str(refused.value)[:160]}; the store logged 'peer did not "
                                "return a certificate'; with it: PONG")


class Impostor:
    """A TLS server on loopback with a certificate of the project's own CA, for another name than the store's:
    what a client would meet if someone answered for the store with another of the project's server keys. It
    records every byte a client sends after the handshake (a password, first of all)."""

    def __init__(self, test_pki: Path):
        self.scratch = ScratchFiles("impostor-")
        ca_key, ca_cert = load_ca(test_pki)
        key, cert = issue_server_certificate(ca_key, ca_cert, "broker", ["broker"], [])
        pair = self.scratch.path / "impostor.pem"
        pair.write_bytes(private_key_pem(key) + cert.public_bytes(Encoding.PEM) + ca_cert.public_bytes(Encoding.PEM))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pair)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        """Every connection, one after the other (a client may retry), until closed."""
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return                      # closed
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(5)
                    while chunk := tls.recv(4096):
                        self.received += chunk
            except OSError:
                pass                        # the client gave up, as it must

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)
        self.scratch.remove()


@controls("RES-01")
def test_clients_check_the_result_store_host_name(stack, vhosts, test_pki, celery_client, record_property):
    # celery_client: the project's client code as this stack runs it (a weakened stack patches it there).
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    import redis
    from {{ cookiecutter.package_name }}.result_store import ResultStoreSettings
    identity = user(stack, vhosts[0], "producer")
    cert, key = stack.endpoint.certificate_files(identity)
    from tools import result_store
    password_file = result_store.credential_path(stack.secrets_dir, identity)

    def shipped_client(port: int):
        """The Celery backend the project's clients use (result_store.py), pointed at `port` on loopback."""
        settings = ResultStoreSettings(f"rediss://{identity}@127.0.0.1:{port}/0", password_file, vhosts[0],
                                       stack.project_dir / "pki" / "ca.crt", cert, key)
        config = settings.config()
        tls = config["redis_backend_use_ssl"]
        return redis.Redis(host="127.0.0.1", port=port, ssl=True, socket_timeout=10, **tls,
                           credential_provider=config["redis_backend_credential_provider"])

    impostor = Impostor(test_pki)
    try:
        with pytest.raises(redis.ConnectionError) as refused:
            shipped_client(impostor.port).ping()
    finally:
        impostor.close()
    assert impostor.received == b"", "the client talked to a server certified for another name"
    assert "certificate verify failed" in str(refused.value) and "127.0.0.1" in str(refused.value), refused.value
    assert shipped_client(stack.results_port).ping() is True       # the real store, certified for its names
    record_property("evidence", f"a project-CA server certified for 'broker' only: {str(refused.value)[:200]}; "
                                "nothing sent to it; the store itself: PONG")
