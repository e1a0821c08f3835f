"""Structured logs: one JSON object per line on stderr, with the task id and name when there is one."""
import json
import logging
import os

from celery import signals
from celery._state import get_current_task
from celery.worker import request

LOGGED_ARGUMENT_CHARS = 256


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            # Celery's own context of its received/succeeded/failed lines: the arguments as the argsrepr and kwargsrepr
            # headers show them, secrets masked (redaction.py); shortened, as a log line is no place for a payload.
            entry.update({key: str(data[key])[:LOGGED_ARGUMENT_CHARS] for key in ("args", "kwargs") if key in data})
        audit = getattr(record, "audit", None)
        if isinstance(audit, dict):
            entry.update(audit)            # a refusal's stable event name and tenant (audit.py)
        task = get_current_task()
        if task is not None and task.request.id:
            entry["task_id"] = task.request.id
            entry["task_name"] = task.name
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


@signals.setup_logging.connect
def configure_logging(**_):
    # Connecting to setup_logging replaces Celery's own logging setup with ours.
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    # Celery decides once, at import, whether a request logs its DEBUG lines ("Task accepted: ..."); decide again
    # now that the level is known, so LOG_LEVEL=DEBUG shows them.
    request.__optimize__()
