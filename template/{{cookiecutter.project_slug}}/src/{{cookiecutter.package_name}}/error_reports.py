"""Error reports (error_reports = sentry): each failed task reported to the project's Sentry, no secret in it (LOG-03).

A report repeats what the worker knew when the task failed. What it would carry, and what is done about it:

* the task's arguments (the Celery integration's `celery-job` context): kept, except each argument the task's schema
  types as a secret, masked as in the message headers (redaction.py); those secrets' values are then masked wherever
  else the report holds them (an exception message that quotes one, a log line kept as a breadcrumb);
* the local variables of each stack frame, where Celery's own frames hold the arguments as received: not collected;
* personal data (user_info), tracing, and Sentry's trace headers on the task messages a worker sends (the
  header policy refuses headers it does not know): off.

The DSN is a secret file (secrets/error-reports.dsn), read once when the worker starts; while it is empty, nothing
is sent. Reports go over HTTPS only, the server's certificate checked against certifi's bundle, or against
secrets/error-reports-ca.pem for a self-hosted Sentry with a CA of its own.
"""
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery import bootsteps

from . import audit, errors, redaction

logger = logging.getLogger(__name__)

DSN_FILE = "TASKS_ERROR_REPORTS_DSN_FILE"
CA_FILE = "TASKS_ERROR_REPORTS_CA_FILE"
# What the SDK collects by itself (its `data_collection` option): task arguments, to be masked by `scrub`; no frame
# variables, no user data.
COLLECTED: Any = {"user_info": False, "stack_frame_variables": False, "queues": True}


def read_dsn(path: Path) -> str | None:
    """The DSN in the file, or None while the file is empty. Never echoed: it holds the project's key."""
    try:
        dsn = path.read_text(encoding="utf-8").strip()
    except OSError:
        raise errors.ImproperlyConfigured(errors.MISSING_FILE.format(what="error reports DSN", path=path)) from None
    if not dsn:
        return None
    scheme = urlsplit(dsn).scheme
    if scheme != "https":
        raise errors.ImproperlyConfigured(errors.PLAINTEXT_DSN.format(path=path, scheme=scheme))
    return dsn


def ca_bundle(path: str | None) -> str | None:
    """The CA file for a self-hosted Sentry, or None (certifi's bundle) when it is not set or empty."""
    if not path or not Path(path).is_file() or not Path(path).read_text(encoding="utf-8").strip():
        return None
    return path


def scrub(event: Any, tasks) -> Any:
    """before_send: the report's task arguments masked by the task's schema, and their secret values everywhere."""
    job = (event.get("extra") or {}).get("celery-job")
    if not isinstance(job, dict):
        return event
    schema = getattr(tasks.get(job.get("task_name")), "schema", None)
    if schema is None:                     # nothing says which arguments are secrets: none is kept
        job.pop("args", None)
        job.pop("kwargs", None)
        return event
    args, kwargs = job.get("args"), job.get("kwargs")
    args, kwargs = (args if isinstance(args, list) else []), (kwargs if isinstance(kwargs, dict) else {})
    secrets = redaction.secret_values(schema, args, kwargs)
    job["args"], job["kwargs"] = redaction.masked_arguments(schema, args, kwargs)
    return redaction.mask_values(event, secrets) if secrets else event


def start(app) -> bool:
    """Report the worker's failed tasks to the Sentry of the DSN file; False (and a log line why) when it is off."""
    path = os.environ.get(DSN_FILE)
    if not path:
        logger.warning("error reports off: %s is not set", DSN_FILE)
        return False
    dsn = read_dsn(Path(path))
    if dsn is None:
        logger.warning("error reports off: %s is empty; put the Sentry project's DSN there and restart", path)
        return False
    import sentry_sdk     # in the image only with error_reports = sentry (requirements/worker.lock)
    from sentry_sdk.integrations.celery import CeleryIntegration
    sentry_sdk.init(
        dsn=dsn,
        ca_certs=ca_bundle(os.environ.get(CA_FILE)),
        data_collection=COLLECTED,
        integrations=[CeleryIntegration(propagate_traces=False)],
        # Looked up at each report, so that a weakened stack's patch of `scrub` takes effect.
        before_send=lambda event, hint: scrub(event, app.tasks),
    )
    sentry_sdk.get_global_scope().set_tag("tenant", audit.tenant_of(app))
    logger.info("error reports on: failed tasks are reported to %s over HTTPS", urlsplit(dsn).hostname)
    return True


class ErrorReports(bootsteps.Step):
    """Worker bootstep: reporting starts before the pool forks, so every process reports; a DSN that is not HTTPS
    stops the worker from starting."""

    def __init__(self, worker, **kwargs):
        start(worker.app)
        super().__init__(worker, **kwargs)
