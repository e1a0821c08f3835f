"""What the tests know of a task's input, read from its JSON Schema (`schema.model_json_schema()`) and never from
pydantic's validator: the fields in order, their bounds, and an oracle that judges arguments the way the schema
declares (the jsonschema library, told where pydantic's strict mode and Rust regexes read it differently)."""
import functools
import re
from typing import Any, Iterator

from jsonschema import Draft202012Validator, ValidationError, validators

# Unicode White_Space (what `\s` means in pydantic's Rust regex engine; Python's `\s` also matches \x1c-\x1f).
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
              "\u2028\u2029\u202f\u205f\u3000"
# Escapes whose Python meaning differs from Rust's and that no schema here uses yet: translate them before use.
UNTRANSLATED = {r"\S", r"\w", r"\W", r"\b", r"\B", r"\Z", r"\A"}


@functools.lru_cache
def rust_regex(pattern: str) -> re.Pattern:
    """`pattern` as pydantic's Rust engine reads it: `$` only at the very end (Python's also matches before a
    final newline), `\\s` Unicode White_Space. Anything else the two engines read alike in these patterns."""
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escape = pattern[i:i + 2]
            if escape in UNTRANSLATED:
                raise NotImplementedError(f"pattern {pattern!r}: {escape} means something else to Rust; "
                                          "teach rust_regex its translation")
            space = re.escape(WHITE_SPACE)
            out.append((space if in_class else f"[{space}]") if escape == r"\s" else escape)
            i += 1
        elif char == "[" and not in_class:
            in_class = True
            out.append("[")
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):            # a `]` first in a class is a literal
                out.append(r"\]")
                i += 1
        elif char == "]" and in_class:
            in_class = False
            out.append("]")
        else:
            out.append(r"\Z" if char == "$" and not in_class else char)
        i += 1
    return re.compile("".join(out))


def _strict_integer(checker, instance) -> bool:
    # pydantic's strict int takes an int only; JSON Schema's "integer" also takes 1.0 (both refuse booleans).
    return type(instance) is int


def _rust_pattern(validator, pattern, instance, schema) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not rust_regex(pattern).search(instance):
        yield ValidationError(f"does not match {pattern!r}")


Oracle = validators.extend(Draft202012Validator, validators={"pattern": _rust_pattern},
                           type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer))


def task_schema(task) -> dict:
    return task.schema.model_json_schema()


def fields(schema: dict) -> list[str]:
    """The task's parameters in order (positional arguments bind to them in this order)."""
    return list(schema.get("properties", {}))


def field_schema(schema: dict, field: str) -> dict:
    """One field's schema, with the definitions its references may point at."""
    return {**schema["properties"][field], "$defs": schema.get("$defs", {})}


def resolve(schema: dict, root: dict) -> dict:
    """`{"$ref": "#/$defs/X"}` -> the definition (pydantic puts nested models and enums there)."""
    while "$ref" in schema:
        schema = root.get("$defs", {})[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def integer_bounds(schema: dict) -> tuple[int | None, int | None]:
    """The smallest and largest integer a schema allows (None: unbounded that way)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + 1
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - 1
    return low, high


def bind(schema: dict, args: list, kwargs: dict) -> dict[str, Any] | None:
    """Positional and named arguments as one object, as a call binds them; None when a call cannot bind (too
    many positional arguments, one given both ways)."""
    names = fields(schema)
    if len(args) > len(names) or any(key in names[:len(args)] for key in kwargs):
        return None
    return {**dict(zip(names, args, strict=False)), **kwargs}


def accepts(schema: dict, args: list, kwargs: dict) -> bool:
    values = bind(schema, args, kwargs)
    return values is not None and Oracle(schema).is_valid(values)


def stretched(text: str, length: int) -> str:
    """`text` brought to `length` by repeating its first character in front (keeps most patterns matching)."""
    length = max(length, 0)
    return (text[:1] * (length - len(text)) + text)[-length:] if length else ""


# A value of another JSON type, per type: strict validation takes no look-alikes ("7" for 7, 7 for "7").
OTHER_TYPE = {"integer": "7", "number": "7.5", "string": 7, "boolean": "true", "array": 5, "object": [], "null": 0}
UNKNOWN_FIELD = "unexpected_field"


def _past_the_limits(schema: dict, value) -> list:
    """Values of a field just outside each limit its schema declares, made from a valid `value` of it."""
    kind, outside = schema.get("type"), []
    if kind == "integer":
        low, high = integer_bounds(schema)
        outside += [limit + step for limit, step in ((low, -1), (high, 1)) if limit is not None]
    if kind == "string" and isinstance(value, str):
        if schema.get("minLength", 0) > 0:
            outside.append("")
        if "maxLength" in schema:
            outside.append(stretched(value or "x", schema["maxLength"] + 1))
        # A final newline (Rust's `$` refuses it), and characters the shipped patterns refuse: kept where refused.
        outside += [text for text in (value + "\n", value + "'; --")
                    if "pattern" in schema and not rust_regex(schema["pattern"]).search(text)]
    if "enum" in schema:
        outside.append(f"{schema['enum'][0]}x")
    if kind == "array" and isinstance(value, list):
        if schema.get("minItems", 0) > 0:
            outside.append([])
        if "maxItems" in schema and value:
            outside.append(value[:1] * (schema["maxItems"] + 1))
    return outside


def invalid_variants(schema: dict, example: dict) -> list[tuple[dict, str]]:
    """(kwargs, field the refusal must name): a valid `example` with one thing wrong each: a required field
    missing, an unknown field, each field of the wrong JSON type (each list item too) or just past a limit."""
    variants = [({key: value for key, value in example.items() if key != field}, field)
                for field in schema.get("required", ())]
    variants.append(({**example, UNKNOWN_FIELD: 1}, UNKNOWN_FIELD))
    for field in fields(schema):
        declared = resolve(schema["properties"][field], schema)
        if declared.get("type") in OTHER_TYPE:
            variants.append(({**example, field: OTHER_TYPE[declared["type"]]}, field))
        items = resolve(declared.get("items", {}), schema)
        if declared.get("type") == "array" and items.get("type") in OTHER_TYPE and example.get(field):
            variants.append(({**example, field: [*example[field][:1], OTHER_TYPE[items["type"]]]}, f"{field}.1"))
        variants += [({**example, field: value}, field) for value in _past_the_limits(declared, example.get(field))]
    return variants
