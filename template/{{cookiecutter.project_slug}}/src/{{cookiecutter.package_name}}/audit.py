"""The worker's audit events: each refusal is one log line with a stable event name and the tenant, so that an
operator can find every refusal of one tenant in the container logs (`python -m tools.audit`, which also names
the broker's refusals from its own log lines). The names below are a public interface: the README lists them,
and renaming one breaks whoever alerts on it."""
import logging

from kombu.utils.url import url_to_parts

SERIALIZER = "serializer.refused"        # a message in another content type than JSON: dead-lettered unread
HEADER_POLICY = "header-policy.refused"  # forged or out-of-bounds task headers (header_policy.py)
ALLOW_LIST = "allow-list.refused"        # a task this tenant, or this queue, may not run (allowlist.py)
MESSAGE = "message.refused"              # malformed, undecodable, or naming an unknown task
ARGUMENTS = "arguments.refused"          # arguments that fail the task's schema: the body never ran

EVENTS = (SERIALIZER, HEADER_POLICY, ALLOW_LIST, MESSAGE, ARGUMENTS)
# The dashboard's (flower = https, dashboard.py): a request without its login, a route it does not serve (an
# action, /metrics) or that failed, a TLS handshake it refused (plain HTTP, an old version, a weak suite), a task
# event it could not read.
DASHBOARD_LOGIN = "dashboard-login.refused"
DASHBOARD_ROUTE = "dashboard-route.refused"
DASHBOARD_TLS = "dashboard-tls.refused"
DASHBOARD_EVENT = "dashboard-event.refused"
DASHBOARD_EVENTS = (DASHBOARD_LOGIN, DASHBOARD_ROUTE, DASHBOARD_TLS, DASHBOARD_EVENT)


def tenant_of(app) -> str | None:
    """The worker's tenant: the vhost of the broker URL it consumes from (None if that cannot be told: an audit
    line must never be what stops a worker)."""
    try:
        return url_to_parts(app.conf.broker_url).path or None
    except Exception:  # noqa: BLE001 - whatever the URL holds, the refusal is still logged
        return None


def fields(app, event: str, **details) -> dict:
    """`extra` for a log call: the JSON formatter (logging_setup.py) writes these fields on the line."""
    return {"audit": {"event": event, "tenant": tenant_of(app), **details}}


def log(logger: logging.Logger, app, event: str, message: str, *args, **details) -> None:
    # ERROR, as the dead-letter lines: a stack that keeps only errors keeps every refusal.
    logger.error(message, *args, extra=fields(app, event, **details))
