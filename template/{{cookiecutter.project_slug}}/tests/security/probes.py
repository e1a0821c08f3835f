"""Low-level probes the security tests use: raw TLS handshakes, key-exchange groups, listener tables, /proc."""
import datetime as dt
import socket
import ssl
import threading
import warnings
from functools import cache
from pathlib import Path

from cryptography import x509

from tls import issuer_of, write_client_pair, write_crl
from tools.broker_client import Endpoint

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
LISTEN = "0A"
# Refusals the *client's own* TLS library raises before the server could answer: they prove nothing about the server.
CLIENT_SIDE_ERRORS = ("NO_SUITABLE_GROUPS", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE")


def amqp_over_tls(port: int, context: ssl.SSLContext, server_name: str,
                  session: ssl.SSLSession | None = None) -> tuple[bool, str]:
    """Handshake (offering to resume `session` if given), send the AMQP header, read the reply: (True, tls version,
    marked "resumed" if the server resumed the session) if the broker starts talking AMQP, (False, the error) if it
    refuses at any point (TLS 1.3 refuses client certs after the handshake)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=server_name, session=session) as tls:
                tls.sendall(AMQP_HEADER)
                reply = tls.recv(7)
                if reply[:1] == b"\x01":       # a method frame: connection.start
                    return True, f"{tls.version()} resumed" if tls.session_reused else tls.version() or ""
                return False, f"connection closed without AMQP reply ({reply!r})"
    except (ssl.SSLError, OSError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def throwaway_client(pki: Path, directory: Path, name: str,
                     not_valid_before: dt.datetime | None = None) -> tuple[x509.Certificate, ssl.SSLContext]:
    """A fresh client certificate from the project CA (files in `directory`), and a context that presents it.
    Valid for a day: its key outlives the test in pytest's kept temporary directories."""
    cert = write_client_pair(pki, "producer", directory, valid_days=1, not_valid_before=not_valid_before,
                             file_stem=name)
    return cert, pair_context(pki, directory, name)


def pair_context(ca_dir: Path, pair_dir: Path, name: str) -> ssl.SSLContext:
    """A client context that trusts ca_dir's CA and presents the pair `name` in pair_dir."""
    context = ssl.create_default_context(cafile=str(ca_dir / "ca.crt"))
    context.load_cert_chain(str(pair_dir / f"{name}.crt"), str(pair_dir / f"{name}.key"))
    return context


def revoke_for_the_test_stack(test_pki: Path, cert: x509.Certificate) -> None:
    """Revoke `cert` in the CRL the test stack's broker reads (in its copy of pki/), with the PKI tooling."""
    write_crl(test_pki, *issuer_of(test_pki, cert), [cert])   # its own issuer's list, whichever CA is current


def presented_certificate(port: int, context: ssl.SSLContext, server_name: str) -> x509.Certificate:
    """The certificate the broker presents to a new handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def tls_session(port: int, context: ssl.SSLContext, server_name: str) -> ssl.SSLSession | None:
    """The session of a handshake that got as far as AMQP, for a later connection to offer for resumption."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(AMQP_HEADER)
            tls.recv(7)
            return tls.session


@cache
def _endpoint(project_dir: Path) -> Endpoint:
    return Endpoint(project_dir)     # one stack.toml read for the dozens of probes, not one each


def client_context(project_dir: Path, with_certificate: bool = True) -> ssl.SSLContext:
    """A legitimate client's TLS settings (the first vhost's producer identity), or the same without a certificate."""
    endpoint = _endpoint(project_dir)
    identity = endpoint.stack.topology.user_name(endpoint.stack.vhosts[0], "producer") if with_certificate else None
    return endpoint.tls_context(identity)


def legacy_context(project_dir: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers exactly `version`, floor lowered (`@SECLEVEL=0`): Python refuses TLS 1.0/1.1 itself
    otherwise, and then a refusal would prove nothing about the server."""
    context = client_context(project_dir)
    context.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():                  # "TLSv1 is deprecated": that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    return context


def local_handshake(client: ssl.SSLContext, server_cert: Path, server_key: Path, version: ssl.TLSVersion) -> str:
    """Handshake `client` with an in-process server that speaks only `version`: the version agreed, which proves
    the client really offers it (so a refusal by the broker is the broker's)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(server_cert), str(server_key))
    server.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = server.maximum_version = version
    trusting = client.check_hostname, client.verify_mode
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: _serve_once(listener, server), daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client.wrap_socket(raw) as tls:
                return tls.version() or ""
    finally:
        client.check_hostname, client.verify_mode = trusting
        thread.join(10)
        listener.close()


def _serve_once(listener: socket.socket, server: ssl.SSLContext) -> None:
    connection, _ = listener.accept()
    try:
        server.wrap_socket(connection, server_side=True).close()
    except (ssl.SSLError, OSError):
        connection.close()


def group_probe(project_dir: Path, port: int, server_name: str, group: str, version: ssl.TLSVersion) -> str:
    """Offer one key-exchange group only: "accepted", "refused: <reason>" (the server alerted, or answered with a
    group that was not offered), or "not offerable" (this client cannot offer it, in this version or at all: some
    Python builds, Debian bookworm's 3.11.2 among them, set only elliptic curves, not X25519, X448 or FFDHE groups)."""
    context = client_context(project_dir)
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("ECDHE:DHE:@SECLEVEL=0")
    try:
        context.set_ecdh_curve(group)             # on OpenSSL 3 this sets the client's supported groups
    except ssl.SSLError:
        return "not offerable"
    accepted, detail = amqp_over_tls(port, context, server_name)
    if accepted:
        return "accepted"
    if any(error in detail for error in CLIENT_SIDE_ERRORS):
        return "not offerable"
    return f"refused: {detail}"


def listeners(container) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket inside a container, read from /proc/net/tcp{,6}."""
    return parse_listening(container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"]).output.decode())


def listeners_while_running(container, command: str) -> list[tuple[str, int]]:
    """Every socket seen listening inside a container while `command` (a shell command) runs there: sampled
    back to back, so short-lived listeners (a CLI tool's own Erlang node) are caught too."""
    sampler = (f"({command}) >/dev/null 2>&1 & pid=$!; "
               "while kill -0 $pid 2>/dev/null; do cat /proc/net/tcp /proc/net/tcp6; done")
    return parse_listening(container.exec_run(["sh", "-c", sampler]).output.decode())


def parse_listening(tables: str) -> list[tuple[str, int]]:
    found = set()
    for line in tables.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN or ":" not in fields[1]:
            continue
        address_hex, port_hex = fields[1].split(":")
        found.add((_address(address_hex), int(port_hex, 16)))
    return sorted(found)


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")


def proc_status(container, pid: int = 1) -> dict[str, str]:
    text = container.exec_run(["cat", f"/proc/{pid}/status"]).output.decode()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def plaintext_reply(port: int, path: str, host: str) -> bytes:
    """What a plain HTTP request to a TLS port on loopback gets back (nothing HTTP is the point), or the error."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        try:
            return raw.recv(4096)
        except OSError as exc:
            return repr(exc).encode()
