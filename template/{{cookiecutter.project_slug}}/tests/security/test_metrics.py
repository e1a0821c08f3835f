"""Broker metrics only over mutual TLS (MON-01).

With `broker_metrics = tls` RabbitMQ's Prometheus endpoint listens on 15691 over HTTPS alone, and only for an
unrevoked client certificate of the project CA (the scraper's, pki/monitoring.crt, which is no broker user): metrics
name every tenant's queues and their load. The shipped alert rules (monitoring/alerts.yml) are checked against a live scrape,
so that none of them watches a metric the broker does not have. With `broker_metrics = off` there is no listener."""
import http.client
import re
import socket
import ssl
from pathlib import Path

import pytest

from tests.security.probes import listeners, plaintext_reply, revoke_for_the_test_stack, throwaway_client
from tls import bootstrap_pki
from tls.metrics import exposition
from tools.broker_client import Endpoint
from tools.settings import METRICS_SCRAPER

controls = pytest.mark.controls
PROJECT_DIR = Path(__file__).resolve().parents[2]
METRICS_PORT, PLAINTEXT_METRICS_PORT = 15691, 15692
RULE_METRIC = re.compile(r"\b(rabbitmq_[a-z_]+)")
PKI_RULE_METRIC = re.compile(r"\b(pki_[a-z_]+)")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(port: int, context: ssl.SSLContext, server_name: str, path: str = "/metrics") -> str:
    """GET `path` over TLS: "<status> <body>", or the error that ended the attempt (a refusal of the certificate
    arrives as an alert after the TLS 1.3 handshake, at the first read)."""
    try:
        https = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        https.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                         server_hostname=server_name)
        https.request("GET", path)
        response = https.getresponse()
        return f"{response.status} {response.read().decode(errors='replace')}"
    except (ssl.SSLError, OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"


def samples(lines: list[str], metric: str) -> list[dict[str, str]]:
    """The labels of each sample of `metric` in a Prometheus text exposition."""
    return [dict(LABEL.findall(line)) for line in lines if line.startswith(metric + "{")]



@controls("MON-01")
def test_metrics_are_served_over_mutual_tls_only(stack, vhosts, test_pki, tmp_path, record_property):
    sockets = {port for _, port in listeners(stack.broker)}
    assert PLAINTEXT_METRICS_PORT not in sockets, "a plaintext metrics listener (15692)"
    if stack.stack.metrics != "tls":
        assert METRICS_PORT not in sockets
        assert not (PROJECT_DIR / "monitoring").exists()
        record_property("evidence", f"broker_metrics = off: no metrics listener; listening ports {sorted(sockets)}")
        return
    server_name, port = stack.stack.broker_host, stack.metrics_port
    endpoint = Endpoint(PROJECT_DIR, pki_dir=test_pki)
    scraped = scrape(port, endpoint.tls_context(METRICS_SCRAPER), server_name)
    anonymous = scrape(port, endpoint.tls_context(None), server_name)
    bootstrap_pki(tmp_path / "foreign", broker_host="impostor", client_roles=[METRICS_SCRAPER],
                  ca_common_name="Foreign CA")
    foreign = endpoint.tls_context(None)
    foreign.load_cert_chain(str(tmp_path / "foreign" / f"{METRICS_SCRAPER}.crt"),
                            str(tmp_path / "foreign" / f"{METRICS_SCRAPER}.key"))
    stranger = scrape(port, foreign, server_name)
    revoked, revoked_context = throwaway_client(PROJECT_DIR / "pki", tmp_path, "revoked-scraper")
    before_revocation = scrape(port, revoked_context, server_name)[:3]
    revoke_for_the_test_stack(test_pki, revoked)
    after_revocation = scrape(port, revoked_context, server_name)
    plain = plaintext_reply(port, "/metrics", stack.stack.broker_host)
    rules = (PROJECT_DIR / "monitoring" / "alerts.yml").read_text()
    watched = sorted(set(RULE_METRIC.findall(rules)))
    lines = scraped.splitlines()
    missing = [name for name in watched if not any(line.startswith((name + "{", name + " ")) for line in lines)]
    record_property("evidence", f"with {METRICS_SCRAPER}.crt: {scraped[:3]}, {len(scraped)} bytes; without a "
                                f"certificate: {anonymous[:160]}; foreign CA: {stranger[:160]}; a project "
                                f"certificate: {before_revocation}, once revoked: {after_revocation[:160]}; plain HTTP: "
                                f"{plain[:60]!r}; alert rules' metrics {watched}, missing from the scrape {missing}")
    assert scraped.startswith("200 "), scraped[:300]
    queues = {(labels.get("vhost"), labels.get("queue")) for labels in samples(lines, "rabbitmq_queue_messages_ready")}
    assert {(vhost, "tasks") for vhost in vhosts} <= queues, queues     # every tenant's task queue is in it
    assert "CERTIFICATE_REQUIRED" in anonymous.upper(), f"without a certificate: {anonymous[:200]}"
    assert "UNKNOWN_CA" in stranger.upper(), f"with a foreign CA's certificate: {stranger[:200]}"
    assert before_revocation == "200" and "CERTIFICATE_REVOKED" in after_revocation.upper(), \
        f"a project certificate before and after its revocation: {before_revocation}, {after_revocation[:200]}"
    assert not plain.startswith(b"HTTP/"), plain
    assert missing == [], f"monitoring/alerts.yml watches metrics the broker does not serve: {missing}"


@controls("MON-01")
def test_the_pki_alert_rules_watch_what_tls_metrics_exports(stack, test_pki, record_property):
    """The certificate alerts (expiring within 30 days, unusable) watch `python -m tls metrics`, which the README has
    written into node_exporter's textfile collector: every metric they name is in it, for every certificate the
    stack mounts, each usable now."""
    if stack.stack.metrics != "tls":
        assert not (PROJECT_DIR / "monitoring").exists()
        record_property("evidence", "broker_metrics = off: no monitoring/ (no alert rules to check)")
        return
    rules = (PROJECT_DIR / "monitoring" / "alerts.yml").read_text()
    watched = sorted(set(PKI_RULE_METRIC.findall(rules)))
    exported = exposition(test_pki)
    lines = [line for line in exported.splitlines() if not line.startswith("#")]
    missing = [name for name in watched if not any(line.startswith(name + "{") for line in lines)]
    names = {labels["name"] for labels in samples(lines, "pki_certificate_usable")}
    unusable = [line for line in lines if line.startswith("pki_certificate_usable{") and line.endswith(" 0")]
    record_property("evidence", f"rules watch {watched}; exported for {len(names)} certificates; unusable: "
                                f"{unusable}; missing: {missing}")
    assert watched and missing == []
    assert {"broker", *stack.stack.client_certificates, *stack.stack.dashboard_certificates} <= names
    assert unusable == []
