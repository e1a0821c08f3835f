"""Worker-side message intake: a message the worker cannot run is dead-lettered and logged, never lost.

Celery's own consumer has these gaps with hostile input (reproduced by tests/resilience and tests/security):

* a body of an accepted content type that does not decode (invalid JSON, non-UTF-8, a bad `compression`
  header) is *acked* after logging, so it is gone with no copy for forensics;
* a message whose protocol headers or body have the wrong shape (no `id` header, a body that is not
  `[args, kwargs, embed]`, raw `application/data`, which kombu trusts without `accept_content`) raises out of
  the message handler, which stops the worker: the message goes back to the queue and kills the next worker;
* the `compression` header makes kombu inflate the body before anything else looks at it: 1 MiB of zlib
  inflates to ~1 GiB and the worker is OOM-killed (again and again, on every redelivery);
* the headers themselves are trusted (ETA, time limits, reply_to, embedded callbacks, built-in task names):
  header_policy.py says what they may be, and a message that breaks it is refused here;
* any task name is run from any queue: allowlist.py says which queues this tenant runs, and each task's own;
* the argsrepr/kwargsrepr headers, which Celery logs, are believed: they are rewritten from the body with the
  secrets masked (redaction.py).

The consumer below rejects every such message without requeue, so the queue's dead-letter exchange keeps it,
and writes one log line per message naming its message id, task id and the reason. Decompression is
disabled: this app never compresses, so any compressed message is hostile.
"""
import logging

from celery.utils.saferepr import saferepr
from celery.worker.consumer import Consumer
from kombu import compression
from kombu.exceptions import ContentDisallowed

from . import allowlist, audit, header_policy, redaction, topology

logger = logging.getLogger(__name__)

DEAD_LETTERED = ("dead-lettered message_id=%s task_id=%s task=%s content_type=%s body_bytes=%d "
                 "reason=%s: %s")
# The audit event of each refusal reason (audit.py); the rest are audit.MESSAGE.
AUDIT_EVENTS = {"header-policy": audit.HEADER_POLICY, "not-allowed": audit.ALLOW_LIST}


def disable_decompression() -> None:
    """Forget kombu's decompressors: a compressed message then fails to decode and is dead-lettered."""
    for registry in (compression._decoders, compression._aliases):  # kombu has no public unregister
        registry.clear()


def envelope_problem(message) -> str | None:
    """Why a protocol-2 task message has the wrong shape, or None. Checked before Celery builds a request:
    Celery assumes the shape and fails later, sometimes after the point where it could still report the task."""
    headers = message.headers
    if not isinstance(headers.get("id"), str):
        return "the id header is missing or not a string"
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (isinstance(timelimit, (list, tuple)) and len(timelimit) == 2 and all(
            limit is None or (isinstance(limit, (int, float)) and not isinstance(limit, bool)) for limit in timelimit)):
        return "the timelimit header is not [soft, hard]"
    for name in ("eta", "expires"):
        if headers.get(name) is not None and not isinstance(headers[name], str):
            return f"the {name} header is not an ISO 8601 string"
    body = message.decode()                  # decoded once; Celery reuses the cached result
    if not (isinstance(body, (list, tuple)) and len(body) == 3 and isinstance(body[0], (list, tuple))
            and isinstance(body[1], dict) and (body[2] is None or isinstance(body[2], dict))):
        return "the body is not [args, kwargs, embed]"
    return None


def queue_of(message) -> str | None:
    """The queue a message was published to. Clients may write only to the task exchange, which binds each task
    queue under its own name, and workers also to the default exchange (topology.permissions): in both the
    routing key is the queue's name."""
    info = message.delivery_info or {}
    return info.get("routing_key") if info.get("exchange", "") in ("", topology.TASK_EXCHANGE) else None


def _task_id(message) -> str | None:
    headers = message.headers if isinstance(message.headers, dict) else {}
    task_id = headers.get("id")
    return task_id[:80] if isinstance(task_id, str) else None


def _header(message, name: str) -> str:
    headers = message.headers if isinstance(message.headers, dict) else {}
    return saferepr(headers.get(name), maxlen=80)


class DeadLetteringConsumer(Consumer):
    """Celery's consumer, except that nothing it cannot run is acked away or allowed to stop it."""

    def __init__(self, *args, **kwargs):
        disable_decompression()
        # Read before any message is taken: a worker without its tenant's allow-list refuses to start.
        self.tenant_queues = allowlist.tenant_queues_from_env()
        super().__init__(*args, **kwargs)

    def log_refusal(self, message, reason: str, exc: BaseException | None) -> None:
        properties = getattr(message, "properties", None) or {}
        event = audit.SERIALIZER if isinstance(exc, ContentDisallowed) else AUDIT_EVENTS.get(reason, audit.MESSAGE)
        logger.error(DEAD_LETTERED, saferepr(properties.get("message_id"), maxlen=80), _header(message, "id"),
                     _header(message, "task"), saferepr(message.content_type, maxlen=80),
                     len(message.body or b""), reason, saferepr(exc, maxlen=300),
                     extra=audit.fields(self.app, event, reason=reason, task_id=_task_id(message)))

    def dead_letter(self, message, reason: str, exc: BaseException | None) -> None:
        self.log_refusal(message, reason, exc)
        if not message.acknowledged:
            message.reject_log_error(logger, self.connection_errors, requeue=False)

    def on_decode_error(self, message, exc):
        # Celery acks here ("Can't decode message body"): the message would be lost.
        self.dead_letter(message, "undecodable", exc)

    def on_unknown_message(self, body, message):
        self.dead_letter(message, "not-a-task-message", None)

    def on_invalid_task(self, body, message, exc):
        self.dead_letter(message, "invalid-task-message", exc)

    def on_unknown_task(self, body, message, exc):
        # Celery's handler also reports NotRegistered to the sender's result backend: keep that.
        self.log_refusal(message, "unknown-task", exc)
        try:
            super().on_unknown_task(body, message, exc)
        except Exception:  # noqa: BLE001 - forged headers (no id) must not stop the consumer
            if not message.acknowledged:
                message.reject_log_error(logger, self.connection_errors, requeue=False)

    def create_task_handler(self, *args, **kwargs):
        handle = super().create_task_handler(*args, **kwargs)
        recoverable = tuple(self.connection_errors) + tuple(self.channel_errors)

        def on_task_received(message):
            try:
                if isinstance(message.headers, dict) and "task" in message.headers:   # protocol 2
                    try:
                        problem = envelope_problem(message)
                    except ContentDisallowed as exc:
                        return self.on_invalid_task(None, message, exc)
                    except Exception as exc:  # noqa: BLE001 - whatever the decoder raised
                        return self.on_decode_error(message, exc)
                    if problem is not None:
                        return self.dead_letter(message, "malformed-envelope", ValueError(problem))
                    broken = header_policy.violation(message.headers, message.properties or {},
                                                     message.decode()[2], self.app.tasks,
                                                     chords=getattr(self.app.backend, "supports_chords", False))
                    if broken is not None:
                        return self.dead_letter(message, "header-policy", ValueError(broken))
                    name = message.headers["task"]
                    if name in self.app.tasks:   # unknown names: Celery's handler reports them (on_unknown_task)
                        task = self.app.tasks[name]
                        refused = allowlist.refusal(task, queue_of(message), self.tenant_queues)
                        if refused is not None:
                            return self.dead_letter(message, "not-allowed", PermissionError(refused))
                        # Celery logs these headers as sent; whoever sent them, they now mask the secrets.
                        args, kwargs, _ = message.decode()
                        message.headers.update(redaction.argument_reprs(getattr(task, "schema", None), args, kwargs))
                return handle(message)
            except recoverable:
                raise                         # the connection is gone: let the consumer reconnect
            except Exception as exc:          # noqa: BLE001 - a malformed message, not a broken worker
                self.dead_letter(message, "malformed-task-message", exc)
        return on_task_received
