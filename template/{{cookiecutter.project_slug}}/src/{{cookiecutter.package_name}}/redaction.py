"""Sensitive task arguments (parameters typed `SecretStr` or `SecretBytes`) are masked wherever Celery repeats
arguments as text, so a secret travels only in the message body, to the task that needs it.

Celery copies a task's arguments into the message headers `argsrepr` and `kwargsrepr`, which RabbitMQ, its
management UI, tracing tools and the worker's "received" log record (its `data`) all show. The producer writes them
masked (validation.ValidatedTask.apply_async); the worker rewrites them from the body before Celery reads them
(intake.py), because a producer sending by name, or not ours, writes whatever it likes there. Task events, which
would carry them too, are off (config.py). Validation errors never echo input values (validation.describe_errors).
"""
import functools
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from celery.utils.saferepr import saferepr
from pydantic import BaseModel, SecretBytes, SecretStr

MASK = "**********"        # what pydantic itself prints for a secret
REPR_CHARS = 1024          # Celery's own bound on these headers (argsrepr_maxsize, kwargsrepr_maxsize)
SECRET_TYPES = (SecretStr, SecretBytes)


def _is_secret(hint) -> bool:
    if isinstance(hint, type) and issubclass(hint, SECRET_TYPES):
        return True
    return any(_is_secret(argument) for argument in typing.get_args(hint))   # Optional[SecretStr], Annotated


@functools.cache   # per task schema, once: this runs for every message the worker takes and every call sent
def sensitive_fields(schema: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, field in schema.model_fields.items() if _is_secret(field.annotation))


def argument_reprs(schema: type[BaseModel] | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, str]:
    """The `argsrepr` and `kwargsrepr` headers for a call, its sensitive arguments masked."""
    hidden = sensitive_fields(schema) if schema is not None else frozenset()
    fields = list(schema.model_fields) if schema is not None else []
    args = [MASK if position < len(fields) and fields[position] in hidden else value
            for position, value in enumerate(args)]
    kwargs = {name: MASK if name in hidden else value for name, value in kwargs.items()}
    return {"argsrepr": saferepr(args, REPR_CHARS), "kwargsrepr": saferepr(kwargs, REPR_CHARS)}
