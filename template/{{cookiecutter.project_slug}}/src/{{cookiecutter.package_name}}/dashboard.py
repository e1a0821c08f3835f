"""Flower, Celery's dashboard, as this project serves it (MON-02, MON-03): one per vhost, in its own image.

* HTTPS only, TLS 1.2 or 1.3 with AEAD suites, a certificate of the project's CA for localhost (from the host, the
  dashboard is reached through its port published on loopback; in the stack it shares a network with the broker
  only, never with the workers, whose tasks may run attacker-influenced code);
* a login on every page and API call (HTTP Basic over that TLS; the password is a secret file, never an argument,
  an environment variable or a log line); only its static files (CSS, scripts) and its logout page answer without;
* read-only: only the pages and API calls that read are routed at all; Flower's own read-only switch is on as well,
  and its broker user (the vhost's monitor) may publish nowhere, so even a routing mistake could not send, revoke or
  shut down anything. /metrics and /healthcheck, which Flower serves without a login, are not routed either;
* no remote control: it never inspects or wakes workers (they have remote control off, and the monitor may not
  reach their mailboxes); what it shows comes from the task events the workers send.

    python -m {{ cookiecutter.package_name }}.dashboard          # serve (the dashboard image's command)
    python -m {{ cookiecutter.package_name }}.dashboard check    # healthcheck: an authenticated HTTPS request

Each refusal is one audit line (LOG-02, audit.py): a request without the login, a route not served, a refused TLS
handshake; nothing else is logged per request (no access log, no URI: queries can carry search terms).
"""
from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import audit
from .liveness import INTERVAL_SECONDS, LIVENESS_FILE, liveness_problem

PORT = 5555
SECRETS_DIR = Path(os.environ.get("SECRETS_DIR", "/run/secrets"))
LOGIN_FILE = SECRETS_DIR / "dashboard_login"          # {"user", "password"}, made at bake time
CERT_FILE, KEY_FILE = SECRETS_DIR / "dashboard.crt", SECRETS_DIR / "dashboard.key"
CA_FILE = SECRETS_DIR / "ca.crt"
SERVER_NAME = "localhost"                              # the only DNS name its certificate carries
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"           # TLS 1.2; TLS 1.3's suites are all AEAD
MAX_TASKS = 10_000                                     # tasks kept in memory (Flower's default is 100,000)
RECEIVING = "dashboard receiving task events"          # logged once its event queue is bound (tests wait for it)

# The routes served (Flower's own patterns): pages and API calls that read. Everything else, including every
# control and task-sending call, /broker (it would call the management API), /metrics and /healthcheck, falls
# through to Flower's 404 handler.
SERVED_ROUTES = frozenset({
    r"/", r"/workers", r"/worker/(.+)", r"/task/(.+)", r"/tasks", r"/tasks/datatable",
    r"/api/workers", r"/api/tasks", r"/api/task/types", r"/api/task/info/(.*)",
    r"/static/(.*)", r"/login/?", r"/logout", r".*",
})


def tenant() -> str | None:
    """The vhost this dashboard watches (its monitor's broker URL)."""
    return urlsplit(os.environ.get("TASKS_BROKER_URL", "")).path.lstrip("/") or None


def audit_line(event: str, **details) -> None:
    print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "level": "ERROR", "event": event,
                      "tenant": tenant(), **details}), flush=True)


def log_request(handler) -> None:
    """tornado's log_function: an audit line for each refused or failed request (the path only: no query string,
    no header), nothing for the others. `client` is the engine's proxy address behind a published port."""
    status, request = handler.get_status(), handler.request
    if status >= 400:
        audit_line(audit.DASHBOARD_LOGIN if status == 401 else audit.DASHBOARD_ROUTE, status=status,
                   method=request.method, path=request.path[:200], client=request.remote_ip)


class TornadoLines(logging.Filter):
    """tornado's own lines about requests, which carry the full URI (a search term, a task id): its "SSL Error on
    <fd> <peer>: <reason>" warning becomes the audit line; its "<status> <method> <uri>: <reason>" warnings go
    (log_request has written the refusal)."""

    def filter(self, record: logging.LogRecord) -> bool:
        arguments = record.args if isinstance(record.args, tuple) else ()
        message = str(record.msg)
        if message.startswith("SSL Error") and len(arguments) >= 3:
            peer, reason = arguments[1], arguments[2]
            audit_line(audit.DASHBOARD_TLS, client=peer[0] if isinstance(peer, tuple) else str(peer),
                       detail=str(reason))
            return False
        return not message.startswith("%d %s")


def read_login(path: Path = LOGIN_FILE) -> tuple[str, str]:
    """(user, password) of the dashboard's login file; a clear error if it is unreadable."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        return entry["user"], entry["password"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"refusing to start: the dashboard login {path} is unreadable ({type(exc).__name__}); "
                         "it is made by `python -m tools.credentials generate`") from None


def basic_auth() -> list[str]:
    """Flower's basic_auth option: the one login, as "user:password"."""
    return [":".join(read_login())]


def tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(AEAD_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(str(CERT_FILE), str(KEY_FILE))
    return context


def served_handlers(handlers: list) -> list:
    """Flower's handler list with only SERVED_ROUTES left; a removed page that has a name (its templates link to
    it, as the menu does to /broker) stays as a name only, answered by the 404 handler."""
    from tornado.web import URLSpec

    not_found = next(handler for handler in handlers if not isinstance(handler, URLSpec) and handler[0] == r".*")[1]

    def pattern(handler) -> str:
        return handler.regex.pattern.rstrip("$") if isinstance(handler, URLSpec) else handler[0]

    served = []
    for handler in handlers:
        if pattern(handler) in SERVED_ROUTES:
            served.append(handler)
        elif isinstance(handler, URLSpec) and handler.name:
            served.append(URLSpec(handler.regex.pattern, not_found, name=handler.name))
    return served


def serve() -> int:
    # Flower and tornado are in the dashboard image only (requirements/dashboard.lock), not in the workers'.
    import flower.app
    import flower.urls
    import flower.views
    from tornado.web import HTTPError
    from flower.events import Events
    from flower.options import options
    from celery.events import EventReceiver
    from tornado.ioloop import IOLoop

    from .celery_app import app

    class DashboardReceiver(EventReceiver):
        """Celery's event receiver on one connection (kombu's consumer loop would open a second one and leave the
        first idle until the broker drops it), with no wake-up broadcast to the workers (a publish to their
        mailboxes, which the monitor may not make), saying when events flow in."""

        ready = False
        last_beat = 0.0

        def create_connection(self):
            return self.connection

        def on_consume_ready(self, connection, channel, consumers, **kwargs):
            self.ready = True
            print(json.dumps({"level": "INFO", "message": RECEIVING, "tenant": tenant()}), flush=True)
            super().on_consume_ready(connection, channel, consumers, wakeup=False)

        def on_iteration(self):
            """Each turn of the consuming loop (at least once a second): the healthcheck's sign that events are
            still being read (the workers' liveness file, liveness.py), written every few seconds."""
            if self.ready and time.monotonic() - self.last_beat >= INTERVAL_SECONDS:
                LIVENESS_FILE.write_text(f"{time.time():.0f}\n", encoding="ascii")
                self.last_beat = time.monotonic()

        def _receive(self, body, message, *args, **kwargs):
            """A malformed event (a worker runs tenant code, which may publish anything the worker may) is
            dropped with an audit line, not allowed to stop the dashboard's event stream."""
            try:
                super()._receive(body, message, *args, **kwargs)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                audit_line(audit.DASHBOARD_EVENT, reason=type(exc).__name__)

    class EventsOnly(Events):
        def run(self):
            delay = 1
            while True:
                receiver = None
                try:
                    # With heartbeats (Celery's app.connection() has none): a broker that stops answering is noticed
                    # within two intervals, the stream reconnects, and meanwhile the healthcheck goes unhealthy.
                    with self.capp.connection(heartbeat=self.capp.conf.broker_heartbeat) as connection:
                        receiver = DashboardReceiver(connection, handlers={"*": self.on_event}, app=self.capp)
                        receiver.capture(limit=None, timeout=None, wakeup=False)
                except Exception as exc:  # noqa: BLE001 - any loss (a broker restart, say): reconnect, as Flower does
                    # Back off while no attempt gets as far as receiving (a refusal would otherwise repeat each second).
                    delay = 1 if receiver is not None and receiver.ready else min(delay * 2, 60)
                    print(json.dumps({"level": "WARNING", "message": "task events lost; reconnecting",
                                      "error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay}), flush=True)
                    time.sleep(delay)

    class ReadOnlyFlower(flower.app.Flower):
        def update_workers(self, workername=None):
            """No inspection broadcast (Flower asks the workers over remote control, which is off)."""
            done: asyncio.Future = self.io_loop.asyncio_loop.create_future()
            done.set_result(None)
            return done

    options.port, options.address = PORT, "0.0.0.0"  # nosec B104 - the container's interface; published on loopback
    options.read_only, options.enable_events, options.persistent = True, False, False
    options.basic_auth, options.max_tasks = basic_auth(), MAX_TASKS
    # Flower.__init__ routes the module's handler list: only the served routes are left in it.
    flower.app.default_handlers = served_handlers(flower.urls.handlers)
    loop = IOLoop.current()
    events = EventsOnly(app, io_loop=loop, enable_events=False, max_tasks_in_memory=MAX_TASKS)
    logging.getLogger("tornado.general").addFilter(TornadoLines())
    # A login that is not ASCII makes Flower's comparison raise (a 500 with a traceback): a refused login instead.
    login_check = flower.views.BaseHandler.get_current_user

    def current_user(handler):
        try:
            return login_check(handler)
        except TypeError:
            raise HTTPError(401) from None
    flower.views.BaseHandler.get_current_user = current_user
    dashboard = ReadOnlyFlower(capp=app, options=options, events=events, io_loop=loop, ssl_options=tls_context(),
                               **{**flower.urls.settings, "log_function": log_request})
    loop.asyncio_loop.add_signal_handler(signal.SIGTERM, dashboard.stop)
    dashboard.start_http_server()
    print(json.dumps({"level": "INFO", "message": "dashboard serving", "port": PORT, "tenant": tenant(),
                      "routes": len(flower.app.default_handlers)}), flush=True)
    dashboard.start()
    return 0


def check(port: int = PORT) -> int:
    """Healthcheck: the event stream read within the last 30 s, an authenticated request over verified HTTPS to this
    container's own dashboard (so an expired dashboard certificate fails it too), and the monitor's client
    certificate still valid."""
    from .broker_settings import client_certificate_file
    from .certificate_expiry import expiry_report

    valid, certificate = expiry_report(Path(client_certificate_file()))
    _, problem = liveness_problem(LIVENESS_FILE, "not receiving task events yet",
                                  "no task events read for {age:.0f}s (the event stream is down)")
    if problem is not None:
        print(f"unhealthy: {problem}; {certificate}")
        return 1
    context = ssl.create_default_context(cafile=str(CA_FILE))
    user, password = read_login()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                              server_hostname=SERVER_NAME)
        connection.request("GET", "/api/task/types", headers={"Authorization": f"Basic {token}"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"unhealthy: {type(exc).__name__}: {exc}; {certificate}")
        return 1
    healthy = status == 200 and valid
    print(f"{'healthy' if healthy else 'unhealthy'}: HTTP {status}; {certificate}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(check() if sys.argv[1:] == ["check"] else serve())
