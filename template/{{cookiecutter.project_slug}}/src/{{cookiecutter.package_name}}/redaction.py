"""Sensitive task arguments (parameters typed `SecretStr` or `SecretBytes`) are masked wherever Celery repeats
arguments as text, so a secret travels only in the message body, to the task that needs it.

Celery copies a task's arguments into the message headers `argsrepr` and `kwargsrepr`, which RabbitMQ, its
management UI, tracing tools and the worker's "received" log record (its `data`) all show. The producer writes them
masked (validation.ValidatedTask.apply_async); the worker rewrites them from the body before Celery reads them
(intake.py), because a producer sending by name, or not ours, writes whatever it likes there. Task events repeat
those headers. Validation errors never echo input values (validation.describe_errors). Error reports
(error_reports = sentry) mask the arguments they carry, more strictly (error_reports.py).
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


def _is_secret(hint, seen: frozenset = frozenset()) -> bool:
    """Whether the type is a secret or holds one anywhere: Optional[SecretStr], list[SecretStr], Annotated, or a
    model with a secret field (then the whole argument is masked)."""
    if isinstance(hint, type) and issubclass(hint, SECRET_TYPES):
        return True
    if isinstance(hint, type) and issubclass(hint, BaseModel) and hint not in seen:
        return any(_is_secret(field.annotation, seen | {hint}) for field in hint.model_fields.values())
    return any(_is_secret(argument, seen) for argument in typing.get_args(hint))


@functools.cache   # per task schema, once: this runs for every message the worker takes and every call sent
def sensitive_fields(schema: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, field in schema.model_fields.items() if _is_secret(field.annotation))


def _masked_positions(schema: type[BaseModel] | None, args: Sequence[Any], kwargs: Mapping[str, Any],
                      strict: bool) -> tuple[set[int], set[str]]:
    """(positions of args, names of kwargs) to mask: those the schema types as secrets; with `strict`, also every
    argument the schema does not name (a misspelt keyword, one positional too many), which it cannot vouch for."""
    fields = list(schema.model_fields) if schema is not None else []
    hidden = sensitive_fields(schema) if schema is not None else frozenset()

    def masked(name: str | None) -> bool:
        return name in hidden or (strict and name not in fields)
    return ({position for position in range(len(args)) if masked(fields[position] if position < len(fields) else None)},
            {name for name in kwargs if masked(name)})


def masked_arguments(schema: type[BaseModel] | None, args: Sequence[Any], kwargs: Mapping[str, Any],
                     strict: bool = False) -> tuple[list[Any], dict[str, Any]]:
    """The call's arguments with each one its schema types as a secret (with `strict`, each one it does not name)
    replaced by MASK."""
    positions, names = _masked_positions(schema, args, kwargs, strict)
    return ([MASK if position in positions else value for position, value in enumerate(args)],
            {name: MASK if name in names else value for name, value in kwargs.items()})


def argument_reprs(schema: type[BaseModel] | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, str]:
    """The `argsrepr` and `kwargsrepr` headers for a call, its sensitive arguments masked."""
    args, kwargs = masked_arguments(schema, args, kwargs)
    return {"argsrepr": saferepr(args, REPR_CHARS), "kwargsrepr": saferepr(kwargs, REPR_CHARS)}
