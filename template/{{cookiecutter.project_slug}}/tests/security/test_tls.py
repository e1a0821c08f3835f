"""TLS only, strong TLS, mutual authentication, host-name checks, nothing else reachable (TLS-01..05)."""
import datetime as dt
import ssl
import time

import pytest
from kombu import Connection

from tests.security.probes import amqp_over_tls, client_context, is_loopback, listeners, listeners_while_running
from tests.security.stack import WORKER_READY
from cryptography.hazmat.primitives.serialization import Encoding

from tls import bootstrap_pki, issue_client_certificate, load_certificate, load_private_key
from tls.keys import private_key_pem

controls = pytest.mark.controls


@pytest.fixture(scope="module")
def tls_port(stack):
    return stack.endpoint.port


@pytest.fixture(scope="module")
def server_name(stack):
    return stack.settings["broker"]["host"]


@controls("TLS-01")
def test_no_plaintext_listener_inside_the_broker(stack, record_property):
    sockets = listeners(stack.broker)
    record_property("evidence", f"listening sockets: {sockets}")
    exposed = {port for address, port in sockets if not is_loopback(address)}
    allowed = {5671} | ({15671} if stack.settings["broker"]["management"] == "https" else set())
    assert exposed == allowed
    assert 5672 not in {port for _, port in sockets}


@controls("TLS-01")
def test_only_the_tls_port_is_published(stack, record_property):
    ports = stack.broker.get_wrapped_container().attrs["NetworkSettings"]["Ports"]
    published = {port: bindings for port, bindings in ports.items() if bindings}
    record_property("evidence", f"published: {published}")
    expected = {"5671/tcp"} | ({"15671/tcp"} if stack.settings["broker"]["management"] == "https" else set())
    assert set(published) == expected
    assert all(binding["HostIp"] == "127.0.0.1" for bindings in published.values() for binding in bindings)


@controls("TLS-01")
def test_plaintext_amqp_to_the_tls_port_gets_no_amqp(stack, tls_port):
    import socket
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
        raw.sendall(b"AMQP\x00\x00\x09\x01")
        reply = raw.recv(64)
    assert not reply.startswith(b"\x01") and b"AMQP" not in reply


@controls("TLS-02", "TLS-03")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_legitimate_client_speaks_amqp_over_tls_1_2_and_1_3(stack, tls_port, server_name, version, record_property):
    context = client_context(stack.project_dir)
    context.minimum_version = context.maximum_version = version
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", detail)
    assert accepted, detail
    assert detail == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


@controls("TLS-02")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused_by_the_server(stack, tls_port, server_name, version, record_property):
    context = client_context(stack.project_dir)
    context.set_ciphers("ALL:@SECLEVEL=0")        # lower the client's own floor, or this proves nothing
    context.minimum_version = context.maximum_version = version
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    assert "PROTOCOL_VERSION" in detail.upper() or "UNSUPPORTED_PROTOCOL" in detail.upper(), detail


@controls("TLS-02")
@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"])
def test_weak_cipher_suites_are_refused(stack, tls_port, server_name, cipher, record_property):
    context = client_context(stack.project_dir)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(f"{cipher}:@SECLEVEL=0")
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    # Erlang's TLS server answers "no shared cipher" with an insufficient_security alert.
    assert any(alert in detail.upper() for alert in ("INSUFFICIENT_SECURITY", "HANDSHAKE_FAILURE")), detail


@controls("TLS-03")
def test_client_without_certificate_is_refused(stack, tls_port, server_name, record_property):
    accepted, detail = amqp_over_tls(tls_port, client_context(stack.project_dir, role=None), server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    assert "CERTIFICATE_REQUIRED" in detail.upper() or "HANDSHAKE_FAILURE" in detail.upper(), detail


@controls("TLS-03")
def test_client_certificate_from_a_foreign_ca_is_refused(stack, tls_port, server_name, tmp_path, record_property):
    bootstrap_pki(tmp_path / "foreign", broker_host="impostor", client_roles=["producer"], ca_common_name="Foreign CA")
    context = ssl.create_default_context(cafile=str(stack.project_dir / "pki" / "ca.crt"))
    context.load_cert_chain(str(tmp_path / "foreign" / "producer.crt"), str(tmp_path / "foreign" / "producer.key"))
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    assert "UNKNOWN_CA" in detail.upper(), detail


@controls("TLS-03")
def test_expired_client_certificate_is_refused(stack, tls_port, server_name, tmp_path, record_property):
    pki = stack.project_dir / "pki"
    key, cert = issue_client_certificate(load_private_key(pki / "ca.key"), load_certificate(pki / "ca.crt"),
                                         "producer", valid_days=1,
                                         not_valid_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))
    (tmp_path / "expired.key").write_bytes(private_key_pem(key))
    (tmp_path / "expired.crt").write_bytes(cert.public_bytes(Encoding.PEM))
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(tmp_path / "expired.crt"), str(tmp_path / "expired.key"))
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    assert "CERTIFICATE_EXPIRED" in detail.upper(), detail


def first_log_line_with(container, needles: tuple[str, ...], timeout: float) -> str | None:
    """The first log line containing any of `needles` (None after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = container.get_wrapped_container().logs().decode(errors="replace")
        found = [line for line in logs.splitlines() if any(needle in line for needle in needles)]
        if found:
            return found[0]
        time.sleep(0.2)
    return None


@controls("TLS-04")
def test_worker_refuses_a_broker_certificate_for_another_name(stack, vhosts, record_property):
    # The shipped worker with its own TLS settings (BrokerSettings.ssl_options) expects a name the broker's
    # project-CA certificate does not carry, as when a man in the middle holds a certificate for another
    # name: it must refuse to talk. Only TLS_SERVER_NAME differs from a real worker.
    probe = stack.worker_container(vhosts[0])
    probe.with_env("TLS_SERVER_NAME", "not-the-broker.example")
    probe.start()
    try:
        line = first_log_line_with(probe, ("Hostname mismatch", WORKER_READY), timeout=60)
    finally:
        probe.stop()
    record_property("evidence", str(line)[:500])
    assert line is not None and "CERTIFICATE_VERIFY_FAILED" in line and "Hostname mismatch" in line, line


@controls("TLS-04")
def test_project_client_connects_to_the_right_name(celery_client):
    with Connection(celery_client.conf.broker_url, ssl=celery_client.conf.broker_use_ssl,
                    connect_timeout=10) as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.connected


@controls("TLS-05")
def test_erlang_distribution_and_plaintext_http_unreachable_from_the_network(stack, record_property):
    host = stack.settings["broker"]["host"]
    probe_ports = [4369, 25672, 5672, 15672, 15692, 5671, 15671]
    script = ("import socket,sys\n"
              f"for port in {probe_ports}:\n"
              "    s=socket.socket(); s.settimeout(3)\n"
              f"    print(port, s.connect_ex(({host!r}, port)) == 0)\n")
    probe = stack.worker_container(stack.settings["workers"]["vhosts"][0])
    probe.with_command(["python3", "-c", script])
    probe.start()
    try:
        wrapped = probe.get_wrapped_container()
        wrapped.wait(timeout=60)
        output = wrapped.logs().decode()
    finally:
        probe.stop()
    record_property("evidence", output.strip().replace("\n", "; "))
    reachable = {int(line.split()[0]) for line in output.splitlines() if line.endswith("True")}
    management = {15671} if stack.settings["broker"]["management"] == "https" else set()
    assert reachable == {5671} | management   # the TLS ports (legitimate path) and nothing else


@controls("TLS-05")
def test_cli_tools_erlang_node_listens_on_loopback_only(stack, record_property):
    """The healthcheck runs a CLI tool every 10 s; each one is an Erlang node with its own distribution
    listener (35672-35682), bound to 0.0.0.0 unless told otherwise (CTL_ERL_ARGS in rabbitmq-env.conf)."""
    cli_ports = range(35672, 35683)
    seen = [(address, port) for address, port in listeners_while_running(stack.broker, "rabbitmq-diagnostics -q status")
            if port in cli_ports]
    record_property("evidence", f"CLI node listeners while rabbitmq-diagnostics ran: {seen}")
    assert seen, "the CLI tool's listener was not caught while it ran"    # the sampling works
    assert all(is_loopback(address) for address, _ in seen), seen


@controls("TLS-05")
def test_management_ui_is_https_only_or_absent(stack, record_property):
    import http.client
    sockets = {port for _, port in listeners(stack.broker)}
    assert 15672 not in sockets and 15692 not in sockets          # no plaintext management or metrics
    if stack.settings["broker"]["management"] != "https":
        assert 15671 not in sockets
        record_property("evidence", f"management absent; listening ports {sorted(sockets)}")
        return
    port = int(stack.broker.get_exposed_port(15671))
    context = ssl.create_default_context(cafile=str(stack.project_dir / "pki" / "ca.crt"))
    https = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    https.sock = context.wrap_socket(__import__("socket").create_connection(("127.0.0.1", port), timeout=10),
                                     server_hostname=stack.settings["broker"]["host"])
    https.request("GET", "/api/overview")
    status = https.getresponse().status                           # legitimate path: TLS works, login required
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        plain.request("GET", "/api/overview")
        plain.getresponse().read()
    record_property("evidence", f"HTTPS /api/overview -> {status}; plaintext HTTP to 15671 refused")
    assert status == 401
