"""Validate every task's arguments against its schema before the body runs (producer and worker side)."""
import inspect
import logging
from typing import Any, Mapping, Sequence

from celery import Celery, Task, bootsteps
from pydantic import BaseModel, ValidationError

from . import audit, errors, redaction
from .examples import Example
from .serialization import require_json
from .signature_schema import SchemaUnavailable, schema_from_signature

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
# Where Celery defines its built-in tasks. Told apart by where they come from, not by a `celery.` name, which
# any task could take to skip its schema.
CELERY_BUILT_INS = "celery.app.builtins"


def describe_errors(task_name: str, exc: ValidationError) -> str:
    """One line naming each offending field; never echoes the (possibly huge or hostile) input values."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "(arguments)"
        problems.append(f"{field}: {error['msg']}")
    message = f"invalid arguments for task {task_name!r}: " + "; ".join(problems)
    return message[:MAX_ERROR_CHARS]


def validate_arguments(task_name: str, schema: type[BaseModel], args: Sequence[Any],
                       kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Bind positional and keyword arguments to the schema's fields and validate them."""
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise errors.InvalidTaskArguments(
            f"invalid arguments for task {task_name!r}: (arguments): args must be a list and kwargs an object")
    fields = list(schema.model_fields)
    if len(args) > len(fields):
        raise errors.InvalidTaskArguments(
            f"invalid arguments for task {task_name!r}: (arguments): takes at most {len(fields)} "
            f"positional arguments, got {len(args)}")
    values = dict(zip(fields, args, strict=False))     # fewer positionals than fields: the rest by name
    for name in kwargs:
        if name in values:
            raise errors.InvalidTaskArguments(
                f"invalid arguments for task {task_name!r}: {name}: given both by position and by name")
    values.update(kwargs)
    try:
        model = schema.model_validate(values)
    except ValidationError as exc:
        raise errors.InvalidTaskArguments(describe_errors(task_name, exc)) from None
    return {name: getattr(model, name) for name in fields}


class ValidatedTask(Task):
    """Base class of every task in the app: `schema` is mandatory and enforced on both sides of the queue.

    `@shared_task` makes a subclass per task (for each app); the schema is built then, once, from the task's typed signature
    (signature_schema.py), unless given as `@shared_task(schema=Model)`. A signature that gives none leaves `schema`
    None and the reason in `schema_problem`: the worker then refuses to start (RequireSchemas)."""

    schema: type[BaseModel] | None = None
    schema_problem: str | None = None
    # Declared beside the task too: the queue it runs from (None: the ordinary one; allowlist.py, TEN-03), and a
    # valid call with its result, which the live tests run. Not Celery's own `queue` attribute, deprecated for
    # task_routes (config.route_to_declared_queue reads this one).
    on_queue: str | None = None
    example: Example | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or "schema" in cls.__dict__:
            return                            # the app's own Task subclass, or a schema given explicitly
        # Celery stores the task function as a staticmethod, or as a plain method when bind=True (first parameter
        # the task itself); a class-based task's run is a method too.
        bound = not isinstance(run, staticmethod)
        try:
            cls.schema = schema_from_signature(run.__func__ if not bound else run, bound=bound)
        except SchemaUnavailable as exc:
            cls.schema_problem = str(exc)

    def __call__(self, *args, **kwargs):
        # Worker side: the control that matters, since anyone with publish rights can craft a message.
        try:
            values = validate_arguments(self.name, self.schema, args, kwargs)
        except errors.InvalidTaskArguments as exc:
            # The audit line names the fields (the error does), never their values: those may be secrets.
            audit.log(logger, self.app, audit.ARGUMENTS, "refused arguments: %s", exc, task=self.name)
            raise
        # self.run, not super().__call__: the worker already pushed the request context (id, retries).
        return self.run(**values)

    def apply_async(self, args=None, kwargs=None, **options):
        require_json(options.get("serializer"))
        # Producer side: fail fast with the same message instead of queueing a doomed task.
        if self.schema is not None:
            validate_arguments(self.name, self.schema, args or (), kwargs or {})
            options.update(redaction.argument_reprs(self.schema, args or (), kwargs or {}))   # secrets masked
        return super().apply_async(args, kwargs, **options)


def require_schemas(app: Celery) -> None:
    """Startup check: every task of ours declares a schema whose fields are exactly its parameters."""
    for name, task in app.tasks.items():
        if type(task).__module__ == CELERY_BUILT_INS:
            continue  # Celery's own built-ins (chord_unlock, ...): no producer may invoke them (header_policy.py)
        schema = getattr(task, "schema", None)
        if not isinstance(task, ValidatedTask) or schema is None:
            reason = getattr(task, "schema_problem", None) or "not a ValidatedTask, or no signature to build it from"
            raise errors.ImproperlyConfigured(errors.MISSING_SCHEMA.format(name=name, reason=reason))
        params = [p for p in inspect.signature(task.run).parameters if p not in ("self",)]
        fields = list(schema.model_fields)
        if params != fields:
            raise errors.ImproperlyConfigured(errors.SCHEMA_MISMATCH.format(name=name, fields=fields, params=params))


class RequireSchemas(bootsteps.Step):
    """Worker bootstep: the worker refuses to start while any task lacks a matching schema (VAL-01). It runs when
    the worker is built, after every module that registers tasks was imported and before any message is taken;
    raising here stops the worker (a signal handler could not: Celery logs and ignores their exceptions)."""

    def __init__(self, worker, **kwargs):
        require_schemas(worker.app)
        super().__init__(worker, **kwargs)
