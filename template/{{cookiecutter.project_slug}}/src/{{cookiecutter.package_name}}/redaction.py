"""Sensitive task arguments (parameters typed `SecretStr` or `SecretBytes`) are masked wherever Celery repeats
arguments as text, so a secret travels only in the message body, to the task that needs it.

Celery copies a task's arguments into the message headers `argsrepr` and `kwargsrepr`, which RabbitMQ, its
management UI, tracing tools and the worker's "received" log record (its `data`) all show. The producer writes them
masked (validation.ValidatedTask.apply_async); the worker rewrites them from the body before Celery reads them
(intake.py), because a producer sending by name, or not ours, writes whatever it likes there. Task events repeat
those headers. Validation errors never echo input values (validation.describe_errors). Error reports
(error_reports = sentry) mask the arguments they carry, and their values wherever else they appear (error_reports.py).
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


def _secret_positions(schema: type[BaseModel] | None, args: Sequence[Any]) -> tuple[set[int], frozenset[str]]:
    """(positions of args, names of kwargs) that the schema types as secrets."""
    if schema is None:
        return set(), frozenset()
    hidden, fields = sensitive_fields(schema), list(schema.model_fields)
    return {position for position in range(min(len(args), len(fields))) if fields[position] in hidden}, hidden


def masked_arguments(schema: type[BaseModel] | None, args: Sequence[Any],
                     kwargs: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The call's arguments with each one its schema types as a secret replaced by MASK (by position and by name)."""
    positions, names = _secret_positions(schema, args)
    return ([MASK if position in positions else value for position, value in enumerate(args)],
            {name: MASK if name in names else value for name, value in kwargs.items()})


def secret_values(schema: type[BaseModel] | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> set[str]:
    """The values of the call's secret arguments, as text: what must not appear anywhere a report repeats."""
    positions, names = _secret_positions(schema, args)
    values = [args[position] for position in positions] + [value for name, value in kwargs.items() if name in names]
    return {str(value) for value in values if str(value)}


def mask_values(data: Any, secrets: set[str]) -> Any:
    """`data` (JSON-like: dicts, lists, strings) with every occurrence of each secret replaced by MASK."""
    if isinstance(data, str):
        for secret in sorted(secrets, key=len, reverse=True):     # the longest first: one may contain another
            data = data.replace(secret, MASK)
        return data
    if isinstance(data, Mapping):
        return {key: mask_values(value, secrets) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_values(value, secrets) for value in data]
    return data


def argument_reprs(schema: type[BaseModel] | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, str]:
    """The `argsrepr` and `kwargsrepr` headers for a call, its sensitive arguments masked."""
    args, kwargs = masked_arguments(schema, args, kwargs)
    return {"argsrepr": saferepr(args, REPR_CHARS), "kwargsrepr": saferepr(kwargs, REPR_CHARS)}
