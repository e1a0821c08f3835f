"""The Flower dashboard (flower = https): HTTPS only with a login (MON-02), and read-only (MON-03).

Each tenant's Flower serves HTTPS on a loopback port with a certificate of the project CA for localhost, asks every
request for the tenant's dashboard login, routes only the pages and API calls that read, and logs in to the broker as
the tenant's monitor, which may read task events and nothing else. With flower = off there is none of it: no
dashboard service, no monitor user, no event exchange, and workers that send no events."""
import base64
import http.client
import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.harness.readiness import wait_until
from tests.security.probes import legacy_context, plaintext_reply
from tools import audit, credentials
from tools.broker_client import publish, task_message

controls = pytest.mark.controls
PROJECT_DIR = Path(__file__).resolve().parents[2]
ADD = "{{ cookiecutter.package_name }}.tasks.arithmetic.add"
SERVER_NAME = "localhost"             # the only DNS name a dashboard's certificate carries
PLAINTEXT_REFUSED = "[SSL: HTTP_REQUEST] http request"     # why tornado refuses plain HTTP on its TLS port
LOGIN_REFUSED, ROUTE_REFUSED, TLS_REFUSED = "dashboard-login.refused", "dashboard-route.refused", "dashboard-tls.refused"
# Flower's calls that act (send, revoke, shut down, resize...), and the two it serves without a login.
ACTIONS = [("POST", f"/api/task/async-apply/{ADD}"), ("POST", f"/api/task/send-task/{ADD}"),
           ("POST", f"/api/task/apply/{ADD}"), ("POST", "/api/task/revoke/{task}"), ("POST", "/api/task/abort/{task}"),
           ("POST", f"/api/task/rate-limit/{ADD}"), ("POST", f"/api/task/timeout/{ADD}"),
           ("POST", "/api/worker/shutdown/{worker}"), ("POST", "/api/worker/pool/restart/{worker}"),
           ("POST", "/api/worker/pool/grow/{worker}"), ("POST", "/api/worker/queue/add-consumer/{worker}"),
           ("GET", "/api/task/result/{task}"), ("GET", "/api/queues/length"), ("GET", "/broker")]
UNAUTHENTICATED_BY_DESIGN = ["/metrics", "/healthcheck"]


def login_header(secrets_dir: Path, dashboard: str) -> dict:
    user, password = credentials.read_credential(credentials.dashboard_login_path(secrets_dir, dashboard))
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def project_context() -> ssl.SSLContext:
    """What an operator's browser does with the project's CA installed: verify the chain and the host name."""
    return ssl.create_default_context(cafile=str(PROJECT_DIR / "pki" / "ca.crt"))


def request(port: int, path: str, headers: dict | None = None, method: str = "GET",
            context: ssl.SSLContext | None = None) -> tuple[int | str, str]:
    """(status, body) of one HTTPS request to a dashboard, or (the error, "") when none came back."""
    context = context or project_context()
    try:
        https = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        https.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                         server_hostname=SERVER_NAME)
        https.request(method, path, body=b"" if method == "POST" else None, headers=headers or {})
        response = https.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (ssl.SSLError, OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}", ""



def audit_events(stack, vhost: str, since: float, event: str, count: int) -> list[dict]:
    """The dashboard's audit events of one kind since `since`, once there are `count` of them (python -m tools.audit,
    as an operator collects them)."""
    source = stack.stack.dashboard_service(vhost)

    def found() -> list[dict]:
        return [e for e in audit.collect(stack.project, stack.stack, since)
                if e["source"] == source and e["event"] == event and e.get("tenant") == vhost]
    wait_until(lambda: len(found()) >= count, timeout=30, interval=1, what=f"{count} {event} events from {source}")
    return found()


def no_dashboard(stack, test_secrets) -> str:
    """flower = off: nothing of the dashboard exists (asserted); the evidence line."""
    definitions = json.loads((test_secrets / "definitions.json").read_text())
    monitors = [user["name"] for user in definitions["users"] if "-monitor" in user["name"]]
    exchanges = [e["vhost"] for e in definitions["exchanges"] if e["name"] == stack.stack.topology.EVENT_EXCHANGE]
    assert monitors == [] and exchanges == [] and stack.dashboards == {}
    assert not (PROJECT_DIR / "src" / "{{ cookiecutter.package_name }}" / "dashboard.py").exists()
    assert all(worker.attrs["Config"]["Env"].count("TASKS_SEND_EVENTS=true") == 0 for worker in stack.workers.values())
    return "flower = off: no dashboard service, no monitor user, no event exchange, no worker sending events"


@pytest.fixture(scope="module")
def dashboard(stack, vhosts, test_secrets):
    """(vhost, port, login header) of the first tenant's dashboard once it answers; None with flower = off."""
    if not stack.stack.dashboard:
        return None
    vhost = vhosts[0]
    port = stack.dashboard_port(vhost)
    header = login_header(test_secrets, stack.stack.dashboard_service(vhost))
    deadline = time.monotonic() + 90
    while request(port, "/api/task/types", header)[0] != 200:
        assert time.monotonic() < deadline, f"the dashboard never answered: {request(port, '/api/task/types', header)}"
        time.sleep(1)
    return vhost, port, header


@controls("MON-02")
def test_the_dashboard_serves_https_only_and_only_to_its_login(stack, vhosts, dashboard, test_secrets, record_property):
    if dashboard is None:
        record_property("evidence", no_dashboard(stack, test_secrets))
        return
    vhost, port, header = dashboard
    since = time.time()
    served = request(port, "/api/tasks", header)
    anonymous = request(port, "/api/tasks")
    wrong = request(port, "/api/tasks", {"Authorization": "Basic " + base64.b64encode(b"operator:guess").decode()})
    others = [login_header(test_secrets, stack.stack.dashboard_service(other)) for other in vhosts[1:]]
    another_tenants = [request(port, "/api/tasks", other)[0] for other in others]
    legacy = request(port, "/api/tasks", header, context=legacy_context(PROJECT_DIR, ssl.TLSVersion.TLSv1_1))
    weak = project_context()
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ALL:!AESGCM:!CHACHA20:!AESCCM:@SECLEVEL=0")   # every TLS 1.2 suite without AEAD
    weak_cipher = request(port, "/api/tasks", header, context=weak)
    plain = plaintext_reply(port, "/api/tasks", SERVER_NAME)
    # Each refusal is one audit line (LOG-02): three handshakes, two logins plus the other tenants'.
    handshakes = audit_events(stack, vhost, since, TLS_REFUSED, 3)
    logins = audit_events(stack, vhost, since, LOGIN_REFUSED, 2 + len(others))
    record_property("evidence", f"{stack.stack.dashboard_service(vhost)}: with its login {served[0]}; without "
                                f"{anonymous[0]}; a wrong password {wrong[0]}; other tenants' logins {another_tenants}; "
                                f"TLS 1.1 {legacy[0]}; a CBC suite {weak_cipher[0]}; plain HTTP {plain[:40]!r}; audit: "
                                f"{[e['detail'] for e in handshakes]}, {len(logins)} {LOGIN_REFUSED}")
    assert served[0] == 200 and json.loads(served[1]) is not None
    assert anonymous[0] == 401 and wrong[0] == 401
    assert another_tenants == [401] * len(others)
    # The server's alerts (the client offers these; test_tls.py proves such a client really can).
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(legacy[0]), legacy
    assert "SSLV3_ALERT_HANDSHAKE_FAILURE" in str(weak_cipher[0]), weak_cipher
    assert not plain.startswith(b"HTTP/"), plain
    assert any(PLAINTEXT_REFUSED in e["detail"] for e in handshakes), handshakes
    assert all(e["status"] == 401 and e["path"] == "/api/tasks" for e in logins), logins


@controls("MON-03")
def test_the_dashboard_shows_tasks_and_can_do_nothing_else(stack, dashboard, celery_client, test_secrets,
                                                           record_property):
    if dashboard is None:
        record_property("evidence", no_dashboard(stack, test_secrets))
        return
    vhost, port, header = dashboard
    since = time.time()
    result = celery_client.send_task(ADD, args=(2, 3))
    assert result.get(timeout=60) == 5
    deadline, shown = time.monotonic() + 60, {}
    while shown.get("state") != "SUCCESS":       # the worker's task events reach Flower through the monitor
        assert time.monotonic() < deadline, f"the task never showed as succeeded: {shown}"
        status, body = request(port, "/api/tasks", header)
        shown = json.loads(body).get(result.id, {}) if status == 200 else {}
        time.sleep(0.5)
    page = request(port, f"/task/{result.id}", header)
    worker = shown.get("worker", "celery@nowhere")
    acted = {f"{method} {path.split('/{')[0]}": request(port, path.format(task=result.id, worker=worker), header,
                                                        method)[0] for method, path in ACTIONS}
    open_by_design = {path: request(port, path)[0] for path in UNAUTHENTICATED_BY_DESIGN}
    with stack.connect(vhost, stack.stack.topology.MONITOR_ROLE) as monitor:
        channel = monitor.channel()
        channel.confirm_delivery()
        try:
            publish(channel, "tasks", *task_message(ADD, (1, 1))[:2])
            broker_says = "published"
        except ChannelClosedByBroker as exc:
            broker_says = f"{exc.reply_code} {exc.reply_text}"
    routes = audit_events(stack, vhost, since, ROUTE_REFUSED, len(ACTIONS) + len(UNAUTHENTICATED_BY_DESIGN))
    record_property("evidence", f"task {result.id} shown as {shown.get('state')} by {worker}; its page "
                                f"{page[0]}; actions {acted}; {open_by_design}; the monitor publishing a task: "
                                f"{broker_says}; {len(routes)} {ROUTE_REFUSED} audit events")
    assert page[0] == 200 and result.id in page[1]
    assert set(acted.values()) == {404}, acted
    assert set(open_by_design.values()) == {404}, open_by_design
    assert broker_says.startswith("403 ACCESS_REFUSED"), broker_says
