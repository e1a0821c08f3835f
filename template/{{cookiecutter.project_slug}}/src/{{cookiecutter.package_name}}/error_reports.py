"""Error reports (error_reports = sentry): a task that raises is reported to the project's Sentry, no secret in the
report (LOG-03).

A report repeats what the worker knew when the task failed. What it would carry, and what is done about it:

* the task's arguments (the Celery integration's `celery-job` context): kept where the task's schema vouches for
  them; each argument it types as a secret, or holding one (a model with a secret field), and each it does not name
  at all (a misspelt keyword, one positional too many) is masked (redaction.py);
* the exception's message: kept for a refusal by the schema (InvalidTaskArguments names fields, never values);
  withheld for any other exception of a call that carried a masked argument, since the task's own message may quote
  it, shortened or escaped beyond recognition;
* the local variables of each stack frame, where Celery's own frames hold the arguments as received: not collected;
* anything but a failed task: the SDK's default integrations are off (no logging breadcrumbs or log events, no
  uncaught-exception hooks, no trace headers on the HTTP requests a task makes, which would carry the DSN's key),
  and an event without a task is dropped. Task messages the workers send carry no trace headers either.

The DSN is a secret file (secrets/error-reports.dsn), read once when the worker starts; while it is empty, nothing
is sent. Reports go over HTTPS only, the server's certificate checked against certifi's bundle, or instead against
the CA in secrets/error-reports-ca.pem for a self-hosted Sentry (never against a bundle named by the environment).
"""
import logging
import os
import ssl
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
# Exceptions whose message is known never to quote an argument's value.
MESSAGES_WITHOUT_VALUES = {errors.InvalidTaskArguments.__name__}
WITHHELD = "[withheld: this call carried secret or unnamed arguments]"


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


def ca_bundle(path: str | None) -> str:
    """The CA file of a self-hosted Sentry, checked now; certifi's bundle when it is not set or empty."""
    if path and Path(path).is_file() and Path(path).read_text(encoding="utf-8").strip():
        try:
            ssl.create_default_context(cafile=path)
        except (ssl.SSLError, ValueError):
            raise errors.ImproperlyConfigured(errors.UNREADABLE_CA.format(path=path)) from None
        return path
    import certifi      # sentry-sdk's own dependency
    return certifi.where()


def scrub(event: Any, tasks) -> Any:
    """before_send: a failed task's report with its arguments masked as the module says; any other event dropped."""
    job = (event.get("extra") or {}).get("celery-job")
    if not isinstance(job, dict):
        return None
    schema = getattr(tasks.get(job.get("task_name")), "schema", None)
    args, kwargs = job.get("args"), job.get("kwargs")
    args, kwargs = (args if isinstance(args, list) else []), (kwargs if isinstance(kwargs, dict) else {})
    shown_args, shown_kwargs = redaction.masked_arguments(schema, args, kwargs, strict=True)
    job["args"], job["kwargs"] = shown_args, shown_kwargs
    if shown_args != args or shown_kwargs != kwargs:
        for value in (event.get("exception") or {}).get("values") or []:
            if value.get("type") not in MESSAGES_WITHOUT_VALUES:
                value["value"] = WITHHELD
        event.pop("logentry", None)
        event.pop("message", None)
    return event


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
    from sentry_sdk.integrations.atexit import AtexitIntegration
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.dedupe import DedupeIntegration
    sentry_sdk.init(
        dsn=dsn,
        ca_certs=ca_bundle(os.environ.get(CA_FILE)),
        data_collection=COLLECTED,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[CeleryIntegration(propagate_traces=False), DedupeIntegration(), AtexitIntegration()],
        trace_propagation_targets=[],
        # Looked up at each report, so that a weakened stack's patch of `scrub` takes effect.
        before_send=lambda event, hint: scrub(event, app.tasks),
        before_send_log=lambda log, hint: None,
    )
    sentry_sdk.get_global_scope().set_tag("tenant", audit.tenant_of(app))
    logger.info("error reports on: failed tasks are reported to %s over HTTPS", urlsplit(dsn).hostname)
    return True


class ErrorReports(bootsteps.Step):
    """Worker bootstep: reporting starts before the pool forks, so every process reports; a DSN that is not HTTPS,
    or a CA file that holds no certificate, stops the worker from starting."""

    def __init__(self, worker, **kwargs):
        start(worker.app)
        super().__init__(worker, **kwargs)
