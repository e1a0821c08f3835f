"""TLS only, strong TLS, mutual authentication, host-name checks, nothing else reachable, revocation, rotation
without downtime (TLS-01..07)."""
import datetime as dt
import http.client
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.harness.readiness import WORKER_READY, first_log_line_with, listed_connections, logs, wait_until
from tests.security.probes import (amqp_over_tls, client_context, group_probe, is_loopback, legacy_context,
                                   listeners, listeners_while_running, local_handshake, pair_context,
                                   presented_certificate, revoke_for_the_test_stack, throwaway_client, tls_session)
from tests.security.steady_traffic import SteadyTraffic
from tls import (bootstrap_pki, create_issuing_ca, create_root_ca, issue_client_certificate, issue_server_certificate,
                 load_certificate, rotate, rotate_issuing_ca, write_crl)
from tools.broker_client import publish, task_message
from tls.keys import private_key_pem
from tls.revocation import CRL_MODE, crl_path
from tls.pki_directory import write_atomic

controls = pytest.mark.controls
# Key-exchange groups the broker may agree (rabbitmq.conf ssl_options.eccs): X25519 and the NIST P-256/P-384
# curves, as in Mozilla's intermediate profile. Every other group a client could offer must be refused.
ALLOWED_GROUPS = {"X25519", "prime256v1", "secp384r1"}
PROBED_GROUPS = sorted(ALLOWED_GROUPS | {
    "X448", "secp521r1", "secp224r1", "prime192v1", "secp256k1", "brainpoolP256r1", "brainpoolP384r1",
    "brainpoolP512r1", "sect163k1", "sect163r2", "sect233k1", "sect233r1", "sect283k1", "sect283r1", "sect409k1",
    "sect409r1", "sect571k1", "sect571r1", "ffdhe2048", "ffdhe3072", "ffdhe4096"})


@pytest.fixture(scope="module")
def tls_port(stack):
    return stack.broker_port


@pytest.fixture(scope="module")
def server_name(stack):
    return stack.stack.broker_host


def management_on(stack) -> bool:
    return stack.stack.management == "https"


@controls("TLS-01")
def test_no_plaintext_listener_inside_the_broker(stack, record_property):
    sockets = listeners(stack.broker)
    record_property("evidence", f"listening sockets: {sockets}")
    exposed = {port for address, port in sockets if not is_loopback(address)}
    assert exposed == stack.stack.tls_ports
    assert 5672 not in {port for _, port in sockets}


@controls("TLS-01")
def test_only_the_tls_port_is_published_and_only_on_loopback(stack, record_property):
    ports = stack.broker.attrs["NetworkSettings"]["Ports"]
    published = {port: bindings for port, bindings in ports.items() if bindings}
    record_property("evidence", f"published: {published}")
    assert set(published) == {f"{port}/tcp" for port in stack.stack.tls_ports}
    assert all(binding["HostIp"] == "127.0.0.1" for bindings in published.values() for binding in bindings)


@controls("TLS-01")
def test_plaintext_amqp_to_the_tls_port_gets_no_amqp(tls_port, record_property):
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
        raw.sendall(b"AMQP\x00\x00\x09\x01")
        reply = raw.recv(64)
    record_property("evidence", f"plaintext AMQP header answered with {reply[:16]!r}")
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


@pytest.fixture(scope="module")
def local_server_files(tmp_path_factory):
    """A throwaway server certificate for the in-process TLS server of the old-version positive control."""
    directory = tmp_path_factory.mktemp("local-tls")
    ca_key, ca_cert = create_root_ca("local test CA")
    key, cert = issue_server_certificate(ca_key, ca_cert, "localhost", ["localhost"], [])
    (directory / "server.key").write_bytes(private_key_pem(key))
    (directory / "server.crt").write_bytes(cert.public_bytes(Encoding.PEM))
    return directory / "server.crt", directory / "server.key"


@controls("TLS-02")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"])
def test_old_tls_versions_are_refused_by_the_server(stack, tls_port, server_name, version, local_server_files,
                                                    record_property):
    context = legacy_context(stack.project_dir, version)
    # The same client completes a handshake in `version` with a local server: it really offers that version...
    assert local_handshake(context, *local_server_files, version) == {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1"}[
        version.name]
    # ...and the broker answers it with a protocol_version alert: the refusal is the server's.
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in detail, detail


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
    assert "TLSV1_ALERT_INSUFFICIENT_SECURITY" in detail, detail


@controls("TLS-02")
def test_only_strong_key_exchange_groups_are_agreed(stack, tls_port, server_name, record_property):
    """Offer each group alone, in TLS 1.2 and 1.3: the groups the broker agrees must be exactly the allowed ones
    (weak binary curves, small or Koblitz curves, finite-field groups all refused)."""
    outcomes = {(group, version.name): group_probe(stack.project_dir, tls_port, server_name, group, version)
                for group in PROBED_GROUPS for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)}
    agreed = {group: sorted(v for (g, v), outcome in outcomes.items() if g == group and outcome == "accepted")
              for group in PROBED_GROUPS}
    # Groups this Python cannot offer at all are named in the evidence (none with the CI machine's Python).
    unoffered = sorted(g for g in PROBED_GROUPS if all(outcomes[(g, v)] == "not offerable" for v in ("TLSv1_2", "TLSv1_3")))
    record_property("evidence", "groups agreed: " + ", ".join(
        f"{group} ({'/'.join(versions)})" for group, versions in agreed.items() if versions)
        + f"; {len(PROBED_GROUPS) - len(unoffered)} groups offered, not offerable by this client: {unoffered}")
    assert {group for group, versions in agreed.items() if versions} == ALLOWED_GROUPS - set(unoffered), outcomes
    # TLS 1.3 is where clients choose the group; each allowed group works there (the legitimate path).
    assert all(outcomes[(group, "TLSv1_3")] == "accepted" for group in ALLOWED_GROUPS - set(unoffered)), outcomes
    assert ALLOWED_GROUPS - set(unoffered), "this client can offer none of the allowed groups"


@controls("TLS-03")
def test_client_without_certificate_is_refused(stack, tls_port, server_name, record_property):
    accepted, detail = amqp_over_tls(tls_port, client_context(stack.project_dir, with_certificate=False), server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    assert "CERTIFICATE_REQUIRED" in detail.upper(), detail


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
    _, context = throwaway_client(stack.project_dir / "pki", tmp_path, "expired",
                                  not_valid_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", detail)
    assert not accepted, f"accepted: {detail}"
    assert "CERTIFICATE_EXPIRED" in detail.upper(), detail


@controls("TLS-06")
def test_a_revoked_client_certificate_is_refused_without_a_restart(stack, tls_port, server_name, test_pki, tmp_path,
                                                                   record_property):
    pki = stack.project_dir / "pki"
    revoked, context = throwaway_client(pki, tmp_path, "revoked")
    accepted, before = amqp_over_tls(tls_port, context, server_name)
    assert accepted, f"refused before it was revoked: {before}"
    revoke_for_the_test_stack(test_pki, revoked)
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", f"accepted before revocation ({before}); after: {detail}")
    assert not accepted, f"accepted after revocation: {detail}"
    assert "CERTIFICATE_REVOKED" in detail.upper(), detail


@controls("TLS-06")
def test_a_revoked_client_cannot_resume_a_tls_session_from_before(stack, tls_port, server_name, test_pki, tmp_path,
                                                                  record_property):
    """A resumed TLS 1.2 handshake carries no certificate: a session kept from before the revocation must not
    let the revoked client back in (the broker resumes no sessions)."""
    pki = stack.project_dir / "pki"
    revoked, context = throwaway_client(pki, tmp_path, "revoked")
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    session = tls_session(tls_port, context, server_name)
    assert session is not None
    revoke_for_the_test_stack(test_pki, revoked)
    accepted, detail = amqp_over_tls(tls_port, context, server_name, session=session)
    record_property("evidence", f"a TLS 1.2 session from before the revocation offered again: {detail}")
    assert not accepted, f"accepted after revocation: {detail}"
    assert "CERTIFICATE_REVOKED" in detail.upper(), detail


@controls("TLS-06")
def test_an_unrevoked_certificate_still_connects_after_a_revocation(stack, tls_port, server_name, test_pki, tmp_path,
                                                                    record_property):
    """The legitimate twin: the broker reads the re-signed CRL and refuses only what it lists (an unreadable or
    lapsed CRL would refuse every client)."""
    pki = stack.project_dir / "pki"
    revoked, _ = throwaway_client(pki, tmp_path, "revoked")
    _, kept_context = throwaway_client(pki, tmp_path, "kept")
    revoke_for_the_test_stack(test_pki, revoked)
    accepted, detail = amqp_over_tls(tls_port, kept_context, server_name)
    record_property("evidence", f"after another certificate's revocation: {detail}")
    assert accepted, detail


@controls("TLS-06")
def test_rotate_revokes_the_certificate_it_replaces(stack, vhosts, test_pki, tls_port, server_name, record_property):
    """`python -m tls rotate <identity>` puts the certificate it replaces on the CRL: a kept copy of the old pair (a
    thief's, say) is refused from then on, while the new pair connects (legitimate). Tried on an auditor's pair,
    which no service mounts and only the suite's own logins (from the same copy of pki/) present."""
    identity = stack.stack.topology.user_name(vhosts[-1], "auditor")
    rotation = rotate(test_pki, identity)
    old_accepted, old = amqp_over_tls(tls_port, pair_context(test_pki, rotation.archive_dir, identity), server_name)
    new_accepted, new = amqp_over_tls(tls_port, pair_context(test_pki, test_pki, identity), server_name)
    record_property("evidence", f"{identity} rotated; the old pair: {old}; the new pair: {new}")
    assert new_accepted, new
    assert not old_accepted and "CERTIFICATE_REVOKED" in old.upper(), old


@controls("TLS-08")
def test_a_client_presenting_its_certificate_without_the_issuing_ca_is_refused(stack, tls_port, server_name, tmp_path,
                                                                               record_property):
    """The broker trusts the root alone: the issuing CA is no trust anchor of its own, so a leaf that arrives
    without it cannot be placed under the root. (Every other login in the suite presents the chain: the twin.)"""
    throwaway_client(stack.project_dir / "pki", tmp_path, "leafonly")
    leaf = (tmp_path / "leafonly.crt").read_text()
    (tmp_path / "leafonly.crt").write_text(leaf[:leaf.index("-----END CERTIFICATE-----")] + "-----END CERTIFICATE-----\n")
    accepted, detail = amqp_over_tls(tls_port, pair_context(stack.project_dir / "pki", tmp_path, "leafonly"),
                                     server_name)
    record_property("evidence", f"the leaf alone: {detail}")
    assert not accepted, f"accepted: {detail}"
    assert "UNKNOWN_CA" in detail.upper(), detail


@controls("TLS-08")
def test_a_certificate_under_an_issuing_ca_the_root_revoked_is_refused(stack, tls_port, server_name, test_pki, root,
                                                                       tmp_path, record_property):
    """Recovery from a stolen issuing key rests on the root's CRL: the broker checks the whole chain, so once the root
    revokes an issuing CA, every certificate under it is refused, however valid and unrevoked itself. Tried on a
    second issuing CA made for the test under the project's root (the bake's pki-root/), in the test stack's copy
    of pki/: its client connects first (the legitimate twin), then is refused once the root revokes its CA."""
    root_key, root_cert = root
    ca_key, ca_cert = create_issuing_ca(root_key, root_cert, "Second Issuing CA for the test", ["localhost"], [])
    write_crl(test_pki, ca_key, ca_cert, [])         # an issuing CA's empty CRL, as `init` writes one
    key, cert = issue_client_certificate(ca_key, ca_cert, "producer", valid_days=1)
    (tmp_path / "client.key").write_bytes(private_key_pem(key))
    (tmp_path / "client.crt").write_bytes(cert.public_bytes(Encoding.PEM) + ca_cert.public_bytes(Encoding.PEM))
    context = pair_context(stack.project_dir / "pki", tmp_path, "client")
    accepted, before = amqp_over_tls(tls_port, context, server_name)
    assert accepted, f"refused before its issuing CA was revoked: {before}"
    write_crl(test_pki, root_key, root_cert, [ca_cert])
    accepted, detail = amqp_over_tls(tls_port, context, server_name)
    record_property("evidence", f"accepted before the root revoked its issuing CA ({before}); after: {detail}")
    assert not accepted, f"accepted after its issuing CA was revoked: {detail}"
    assert "CERTIFICATE_REVOKED" in detail.upper(), detail


@controls("TLS-04")
def test_worker_refuses_a_broker_certificate_for_another_name(stack, vhosts, record_property):
    # The shipped worker service with its own TLS settings (BrokerSettings.ssl_options), expecting a name the
    # broker's project-CA certificate does not carry, as when a man in the middle holds a certificate for
    # another name: it must refuse to talk. Only TLS_SERVER_NAME differs from the real worker.
    probe = stack.run_one_off(stack.stack.worker_service(vhosts[0]), env={"TLS_SERVER_NAME": "not-the-broker.example"})
    try:
        line = first_log_line_with(probe, ("Hostname mismatch", WORKER_READY), timeout=90)
    finally:
        stack.remove(probe)
    record_property("evidence", str(line)[:500])
    assert line is not None and "CERTIFICATE_VERIFY_FAILED" in line and "Hostname mismatch" in line, line


@controls("TLS-04")
def test_project_client_connects_to_the_right_name(celery_client, record_property):
    with celery_client.connection_for_write(connect_timeout=10) as connection:     # the app's own settings
        connection.ensure_connection(max_retries=1)
        assert connection.connected
    record_property("evidence", f"connected with server_hostname={celery_client.conf.broker_use_ssl['server_hostname']}")


@controls("TLS-05")
def test_erlang_distribution_and_plaintext_http_unreachable_from_the_network(stack, record_property):
    host = stack.stack.broker_host
    probe_ports = [4369, 25672, 35672, 5672, 15672, 15692, 5671, 15671, 15691]
    script = ("import socket\n"
              f"for port in {probe_ports}:\n"
              "    s = socket.socket(); s.settimeout(3)\n"
              f"    print(port, s.connect_ex(({host!r}, port)) == 0)\n")
    probe = stack.run_one_off(stack.stack.worker_service(stack.stack.vhosts[0]), "python3", "-c", script)
    try:
        probe.wait(timeout=90)
        output = logs(probe)
    finally:
        stack.remove(probe)
    record_property("evidence", output.strip().replace("\n", "; "))
    reachable = {int(line.split()[0]) for line in output.splitlines() if line.endswith("True")}
    assert reachable == stack.stack.tls_ports             # the TLS ports, and nothing else


# What the server's epmd monitor does every minute (rabbit_nodes_common:ensure_epmd/0): spawn `erl` as a port, with
# the server's own environment, as a node named epmd-starter-<n> that halts at once. This one lives 3 s, long enough
# to be seen however busy the machine is (the real one lives a fraction of a second).
EPMD_STARTER_ALIKE = ("P = open_port({spawn_executable, rabbit_runtime:get_erl_path()}, [exit_status, {args, "
                      '["-boot", "no_dot_erlang", "-sname", "epmd-starter-probe", "-noinput", '
                      '"-eval", "timer:sleep(3000)", "-s", "erlang", "halt"]}]), '
                      "receive {P, {exit_status, S}} -> S after 30000 -> timeout end.")


@controls("TLS-05")
def test_short_lived_erlang_nodes_listen_on_loopback_only(stack, record_property):
    """Besides the node's own, two kinds of Erlang node come and go in the broker container, each with a
    distribution listener bound to 0.0.0.0 unless told otherwise (ERL_AFLAGS in rabbitmq-env.conf): every CLI
    tool's (35672-35682; the healthcheck runs one every 10 s), and the "epmd-starter" node the server itself spawns
    every minute. One `rabbitmqctl eval` that has the server spawn a node as it spawns that one shows both."""
    cli_ports = range(35672, 35683)
    steady = set(listeners(stack.broker))
    seen = set(listeners_while_running(stack.broker, f"rabbitmqctl -q eval '{EPMD_STARTER_ALIKE}'"))
    cli = sorted((address, port) for address, port in seen if port in cli_ports)
    spawned = sorted(seen - steady - set(cli))
    record_property("evidence", f"while rabbitmqctl had the server spawn a node: CLI node {cli}, spawned node {spawned}")
    assert cli and spawned, "a short-lived node's listener was not caught while it ran"    # the sampling works
    assert all(is_loopback(address) for address, _ in cli + spawned), cli + spawned


@controls("TLS-05")
def test_management_ui_is_https_only_or_absent(stack, record_property):
    sockets = {port for _, port in listeners(stack.broker)}
    assert 15672 not in sockets and 15692 not in sockets          # no plaintext management or metrics
    if not management_on(stack):
        assert 15671 not in sockets
        record_property("evidence", f"management absent; listening ports {sorted(sockets)}")
        return
    port = stack.management_port
    context = ssl.create_default_context(cafile=str(stack.project_dir / "pki" / "ca.crt"))
    https = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    https.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                     server_hostname=stack.stack.broker_host)
    https.request("GET", "/api/overview")
    status = https.getresponse().status                           # legitimate path: TLS works, login required
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        plain.request("GET", "/api/overview")
        plain.getresponse().read()
    record_property("evidence", f"HTTPS /api/overview -> {status}; plaintext HTTP to 15671 refused")
    assert status == 401


@controls("TLS-07")
def test_the_broker_certificate_is_rotated_without_a_restart_or_a_dropped_connection(
        stack, vhosts, test_pki, tls_port, server_name, celery_client, record_property):
    """The operator's procedure under steady task traffic: `python -m tls rotate broker` (the PKI tooling, on the
    copy of the pair this stack's broker mounts), then `broker-boot reload-tls`. New handshakes present the new
    certificate; a connection opened before keeps working; no task fails; the broker does not restart."""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    context = client_context(stack.project_dir)
    before = presented_certificate(tls_port, context, server_name)
    started = stack.broker.attrs["State"]["StartedAt"]
    traffic = SteadyTraffic(add)
    traffic.start()
    try:
        with stack.connect(vhosts[0], "producer") as held:
            traffic.wait_for(5)
            rotate(test_pki, "broker")
            on_disk = load_certificate(test_pki / "broker.crt")
            reloaded = stack.broker.exec_run(["broker-boot", "reload-tls"])
            assert reloaded.exit_code == 0, reloaded.output.decode(errors="replace")
            moment = time.monotonic()
            after = presented_certificate(tls_port, context, server_name)
            channel = held.channel()                 # the connection from before the rotation still publishes
            channel.confirm_delivery()
            publish(channel, "tasks", *task_message(add.name, (2, 2))[:2])
            traffic.wait_for(5, since=moment)
    finally:
        traffic.stop()
    stack.broker.reload()
    record_property("evidence", f"serial presented before {before.serial_number:x}, on disk after rotate "
                                f"{on_disk.serial_number:x}, presented after reload-tls {after.serial_number:x}; "
                                f"{len(traffic.completed)} tasks completed and {len(traffic.failures)} failed meanwhile, "
                                f"longest gap between completions {traffic.longest_gap():.2f} s; "
                                f"{reloaded.output.decode(errors='replace').strip()[:200]}")
    assert on_disk.serial_number != before.serial_number
    assert after.serial_number == on_disk.serial_number, "new handshakes still get the old certificate"
    assert traffic.failures == [], traffic.failures[:3]
    assert stack.broker.attrs["State"]["StartedAt"] == started, "the broker restarted"


def validity(certificate: x509.Certificate) -> str:
    """A certificate's validity as `rabbitmqctl list_connections peer_cert_validity` shows it. The CLI lists no
    serial; a re-issued certificate's window starts at its issue, so it tells the old pair from the new one."""
    return (f"{certificate.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} - "
            f"{certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


def presented_validities(broker, user: str) -> set[str] | None:
    """The validity of the certificate each of `user`'s running connections presented (None if the CLI failed)."""
    rows = listed_connections(broker, "user", "peer_cert_validity", "state")
    if rows is None:
        return None
    return {window for name, window, state in rows if name == user and state == "running"}


@controls("TLS-07")
def test_a_workers_certificate_is_rotated_and_used_from_its_next_connection(
        stack, vhosts, test_pki, celery_client, record_property):
    """The operator's procedure for a client, under steady task traffic: `python -m tls rotate <vhost>-worker` rewrites
    the pair the worker mounts and revokes the old one. The worker's open connections (authenticated before) are then
    closed, as `rabbitmqctl close_all_user_connections` does and a network may at any time: the worker connects
    again with the new certificate and no task fails. (That the old one is refused from then on is TLS-06's
    test_rotate_revokes_the_certificate_it_replaces.)"""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    identity = stack.stack.topology.user_name(vhosts[0], "worker")
    before = load_certificate(test_pki / f"{identity}.crt")
    traffic, after = SteadyTraffic(add), None
    traffic.start()
    try:
        wait_until(lambda: presented_validities(stack.broker, identity) == {validity(before)}, timeout=60,
                   what="the worker's connections with its baked certificate")
        traffic.wait_for(5)
        crl_file = crl_path(test_pki, load_certificate(test_pki / "issuing-ca.crt"))
        crl_before = crl_file.read_bytes()
        rotate(test_pki, identity)
        after = load_certificate(test_pki / f"{identity}.crt")
        closed = stack.broker.exec_run(["rabbitmqctl", "-q", "close_all_user_connections", identity,
                                        "certificate rotated"])
        assert closed.exit_code == 0, closed.output.decode(errors="replace")
        moment = time.monotonic()
        wait_until(lambda: presented_validities(stack.broker, identity) == {validity(after)}, timeout=90,
                   what="the worker connected again with its new certificate")
        traffic.wait_for(5, since=moment)
    finally:
        traffic.stop()
        if after is not None and presented_validities(stack.broker, identity) != {validity(after)}:
            # The worker did not come back (a weakened rotation: its mount kept the old, now revoked, pair, and the
            # new files lack its read grant): the CRL from before and the grants again, so that it reconnects with
            # what it has and the tests after this one find the stack whole.
            write_atomic(crl_file, crl_before, CRL_MODE, overwrite=True)
            stack.project.grant_secret_access()
    record_property("evidence", f"{identity}'s connections presented the certificate valid {validity(before)} "
                                f"before, {validity(after)} after rotate and reconnection; {len(traffic.completed)} "
                                f"tasks completed and {len(traffic.failures)} failed meanwhile, longest gap between "
                                f"completions {traffic.longest_gap():.2f} s")
    assert traffic.failures == [], traffic.failures[:3]


@controls("TLS-07")
def test_a_producers_certificate_is_rotated_and_used_from_its_next_connection(
        stack, vhosts, test_pki, celery_client, record_property):
    """The same for a producer, here the project's own Celery client sending the steady traffic (the first tenant's
    producer, its pair in this stack's copy of pki/): `python -m tls rotate <vhost>-producer`, and nothing else. The
    connections it has open keep working (TLS checked the certificate at their handshake); the next one it opens
    presents the new certificate; none of its tasks fails. (Closing a producer's connections under load is not part
    of the procedure: with the rpc backend the reply to a task in flight goes with them; seen as one lost result.)"""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    identity = stack.stack.topology.user_name(vhosts[0], "producer")
    before = load_certificate(test_pki / f"{identity}.crt")
    traffic, presented = SteadyTraffic(add), None
    traffic.start()
    try:
        traffic.wait_for(5)
        assert presented_validities(stack.broker, identity) == {validity(before)}
        rotate(test_pki, identity)
        after = load_certificate(test_pki / f"{identity}.crt")
        moment = time.monotonic()
        with celery_client.connection_for_write() as fresh:        # its next connection, as its pool opens one
            fresh.ensure_connection(max_retries=1)
            wait_until(lambda: validity(after) in (presented_validities(stack.broker, identity) or set()),
                       timeout=60, what="the producer's new connection with its new certificate")
            presented = presented_validities(stack.broker, identity)
            traffic.wait_for(5, since=moment)
    finally:
        traffic.stop()
    record_property("evidence", f"{identity}'s connections after rotate presented the certificates valid {presented} "
                                f"(before: {validity(before)}, after: {validity(after)}); {len(traffic.completed)} "
                                f"tasks completed and {len(traffic.failures)} failed meanwhile, longest gap between "
                                f"completions {traffic.longest_gap():.2f} s")
    assert presented == {validity(before), validity(after)}, "open connections carry on, new ones use the new pair"
    assert traffic.failures == [], traffic.failures[:3]


@controls("TLS-07")
def test_the_issuing_ca_is_rotated_without_downtime(stack, vhosts, test_pki, root, tls_port, server_name,
                                                    celery_client, record_property):
    """The operator's procedure for the issuing CA, under steady task traffic: `python -m tls rotate-issuing-ca`
    (with the bake's root) changes no certificate in service, so the workers' connections carry on; during the
    overlap a certificate of the previous CA and one of the new CA both connect; `rotate broker` + `reload-tls`
    move the broker under the new CA. No task fails; nothing restarts. (Runs after the other rotations: it leaves
    this stack's copy of pki/ with the new CA current.)"""
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    root_key, _ = root
    identity = stack.stack.topology.user_name(vhosts[-1], "auditor")
    started = stack.broker.attrs["State"]["StartedAt"]
    traffic = SteadyTraffic(add)
    traffic.start()
    try:
        traffic.wait_for(5)
        rotate_issuing_ca(test_pki, root_key)
        new_ca = load_certificate(test_pki / "issuing-ca.crt")
        old_accepted, old = amqp_over_tls(tls_port, pair_context(test_pki, test_pki, identity), server_name)
        rotate(test_pki, identity)
        new_accepted, new = amqp_over_tls(tls_port, pair_context(test_pki, test_pki, identity), server_name)
        rotate(test_pki, "broker")
        reloaded = stack.broker.exec_run(["broker-boot", "reload-tls"])
        assert reloaded.exit_code == 0, reloaded.output.decode(errors="replace")
        moment = time.monotonic()
        presented = presented_certificate(tls_port, client_context(stack.project_dir), server_name)
        traffic.wait_for(5, since=moment)
    finally:
        traffic.stop()
    stack.broker.reload()
    record_property("evidence", f"during the overlap: {identity} under the previous CA {old}, under the new CA {new}; "
                                f"the broker then presents a certificate issued by {presented.issuer.rfc4514_string()}; "
                                f"{len(traffic.completed)} tasks completed and {len(traffic.failures)} failed "
                                f"meanwhile, longest gap between completions {traffic.longest_gap():.2f} s")
    assert old_accepted and new_accepted, (old, new)
    assert presented.issuer == new_ca.subject, "new handshakes still get a certificate of the previous CA"
    assert traffic.failures == [], traffic.failures[:3]
    assert stack.broker.attrs["State"]["StartedAt"] == started, "the broker restarted"
