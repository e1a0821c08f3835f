"""Per-call cost of argument validation: the project's validator against the usual alternatives.

Runs in this process with the baked package on sys.path (validation.py, signature_schema.py and schemas.py import
no Celery app, unlike the task modules). The schemas are built as the project builds them, from typed signatures
like its tasks' (below); the JSON schemas come from those pydantic models (model_json_schema), so every validator
checks the same constraints (types, bounds, patterns, no extra fields).
"""
import timeit
from typing import Annotated

import fastjsonschema
import jsonschema
from pydantic import Field


def cases(schemas, signature_schema) -> dict:
    """(task name, schema, positional args) for a small and a payload-heavy task: the signatures of the project's
    `add` and `deliver_notification`."""
    def add(x: schemas.Amount, y: schemas.Amount):
        return x + y

    def deliver_notification(notification_id: schemas.Identifier, recipient: schemas.EmailAddress,
                             subject: Annotated[str, Field(min_length=1, max_length=200)],
                             body: Annotated[str, Field(max_length=65_536)]):
        return notification_id

    body = ("All work and no play makes Jack a dull boy. " * 1400)[:60_000]
    build = signature_schema.schema_from_signature
    return {
        "add (2 ints)": ("add", build(add), (1, 2)),
        "deliver_notification (60 KB)": ("deliver_notification", build(deliver_notification),
                                         ("bench-1", "ops@example.com", "benchmark", body)),
    }


def per_call_us(function, budget: float) -> float:
    """Median of 5 timings, each ~budget/5 seconds long, in microseconds per call."""
    number, _ = timeit.Timer(function).autorange()
    number = max(1, int(number * budget / 5 / 0.2))
    runs = timeit.Timer(function).repeat(repeat=5, number=number)
    return sorted(runs)[2] / number * 1e6


def measure(budget: float = 1.0) -> dict:
    from hardened_tasks import schemas, signature_schema, validation
    results = {}
    for label, (task, model, args) in cases(schemas, signature_schema).items():
        values = dict(zip(model.model_fields, args))
        schema = model.model_json_schema()
        reused = jsonschema.Draft202012Validator(schema)
        compiled = fastjsonschema.compile(schema)
        for check in (lambda: reused.validate(values), lambda: compiled(values),
                      lambda: validation.validate_arguments(task, model, args, {})):
            check()                                   # every validator accepts the same valid input
        results[label] = {
            "project: validation.validate_arguments (pydantic)":
                per_call_us(lambda: validation.validate_arguments(task, model, args, {}), budget),
            "pydantic model_validate": per_call_us(lambda: model.model_validate(values), budget),
            "jsonschema.validate (schema checked per call)":
                per_call_us(lambda: jsonschema.validate(values, schema), budget),
            "jsonschema Draft202012Validator (reused)": per_call_us(lambda: reused.validate(values), budget),
            "fastjsonschema (compiled)": per_call_us(lambda: compiled(values), budget),
        }
    return results
