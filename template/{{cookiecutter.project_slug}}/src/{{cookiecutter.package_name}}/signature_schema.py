"""A task's input schema, built once from its typed signature (VAL-01): the parameters are written once."""
import inspect
import typing
from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, create_model


class TaskArguments(BaseModel):
    # strict: "1" is not an int and 1 is not a bool; forbid: an unexpected field is an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SchemaUnavailable(ValueError):
    """The signature cannot bound what the task accepts; the worker refuses to start (validation.require_schemas)."""


# Bare containers are open-ended: `list` is list[Any], `dict` is dict[Any, Any].
OPEN_ENDED = (Any, object, list, dict, tuple, set, frozenset)


def _open_ended(hint) -> bool:
    """Whether `Any`, `object` or a bare container appears anywhere in `hint` (a value it lets through unchecked)."""
    if typing.get_origin(hint) is Annotated:
        return _open_ended(typing.get_args(hint)[0])
    if hint in OPEN_ENDED:
        return True
    return any(_open_ended(argument) for argument in typing.get_args(hint) if argument is not Ellipsis)


def schema_name(function: Callable) -> str:
    """`record_payment` -> `RecordPaymentArguments` (the title in its JSON schema and in pydantic's messages)."""
    return "".join(part.title() for part in function.__name__.split("_")) + "Arguments"


def schema_from_signature(function: Callable, bound: bool = False) -> type[TaskArguments]:
    """A strict model whose fields are `function`'s parameters, in order, typed by their annotations; `bound`
    skips the first parameter (the task itself, `bind=True`). Raises SchemaUnavailable naming the parameter that
    no schema can check: no annotation, `Any` or a bare container, or *args/**kwargs."""
    parameters = list(inspect.signature(function).parameters.values())[1 if bound else 0:]
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - an annotation that does not resolve (a typo'd name, say)
        raise SchemaUnavailable(f"its annotations do not resolve ({type(exc).__name__}: {str(exc)[:100]})") from None
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            # validate_arguments hands the body named values; *args/**kwargs would take anything.
            raise SchemaUnavailable(f"parameter {parameter} is not a named parameter")
        if parameter.name not in hints:
            raise SchemaUnavailable(f"parameter {parameter.name!r} has no type annotation")
        if _open_ended(hints[parameter.name]):
            raise SchemaUnavailable(f"parameter {parameter.name!r} is typed {hints[parameter.name]!r}, which "
                                    "accepts anything")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    try:
        return create_model(schema_name(function), __base__=TaskArguments, __module__=function.__module__, **fields)
    except Exception as exc:  # noqa: BLE001 - pydantic's many ways of saying a type has no schema
        raise SchemaUnavailable(f"pydantic cannot build its schema ({type(exc).__name__}: {str(exc)[:100]})") from None
