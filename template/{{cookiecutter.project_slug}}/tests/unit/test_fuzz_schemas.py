"""Fuzzing the task schemas (VAL-02): thousands of generated argument lists for every registered task.

For every task, the validator must accept exactly what an independent reading of its schema allows (the oracle:
the task's JSON Schema checked by the jsonschema library, tests/schema_oracle.py), must raise nothing but
InvalidTaskArguments otherwise, and the task body must only ever see validated values, unchanged. The arguments
are generated per field from the same JSON Schema, so a new task is fuzzed with nothing added here.
Values are JSON types only: that is all a worker can receive (JSON-only accept_content).
"""
import functools
import inspect
import os
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretBytes, SecretStr

from tests import schema_oracle as oracle
from {{ cookiecutter.package_name }} import errors
from tests.unit.unit_app import app
from {{ cookiecutter.package_name }}.validation import validate_arguments

# Per task and property: 1000 x 2 properties x the tasks (7 shipped: 14,000 argument lists); FUZZ_EXAMPLES=5000
# for more.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TASKS = sorted(name for name in app.tasks if not name.startswith("celery."))
SCHEMAS = {name: oracle.task_schema(app.tasks[name]) for name in TASKS}

# --------------------------------------------------------------------------------------------- strategies
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=12)
# Characters where regex engines disagree: Rust's `\s` against Python's (\x1c-\x1f, NBSP...), a final newline.
TRICKY = oracle.WHITE_SPACE + "\x1c\x1d\x1e\x1f"


def revealed(value):
    """A secret argument reaches the task as SecretStr (redaction.py); the task sees what was sent."""
    return value.get_secret_value() if isinstance(value, (SecretStr, SecretBytes)) else value


def around(limit: int) -> st.SearchStrategy:
    return st.integers(limit - 2, limit + 2)


def with_tricky_character(text: str, character: str, position: int) -> str:
    position %= len(text) + 1
    return text[:position] + character + text[position:]


def valid(schema: dict, root: dict) -> st.SearchStrategy:
    """Values the schema means to allow (mostly: the oracle, not this, has the last word)."""
    schema = oracle.resolve(schema, root)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([valid(alternative, root) for alternative in schema["anyOf"]])
    kind, shortest, longest = schema.get("type"), schema.get("minLength", 0), schema.get("maxLength")
    if kind == "integer":
        return st.integers(*oracle.integer_bounds(schema))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string" and "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda text: shortest <= len(text) <= (longest or len(text)))
    if kind == "string":
        return st.text(min_size=shortest, max_size=min(longest or 50, 50))
    if kind == "array":
        return st.lists(valid(schema.get("items", {}), root), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 8), 8))
    if kind == "object" and "properties" in schema:
        return st.fixed_dictionaries({key: valid(value, root) for key, value in schema["properties"].items()})
    return JSON_VALUES


def past_the_limits(schema: dict, root: dict) -> st.SearchStrategy:
    """Values just past each limit of the schema, and look-alikes of other JSON types."""
    schema = oracle.resolve(schema, root)
    options, kind, fitting = [JSON_SCALARS], schema.get("type"), valid(schema, root)
    if "enum" in schema:
        options += [fitting.map(lambda value: str(value).lower()), fitting.map(lambda value: f"{value} ")]
    options += [past_the_limits(alternative, root) for alternative in schema.get("anyOf", ())]
    if kind == "integer":
        low, high = oracle.integer_bounds(schema)
        near = [None if limit is None else float(limit) for limit in (low, high)]    # nearest floats: 5.0 is no int
        options += [st.booleans(), st.floats(*near, allow_nan=False, allow_infinity=False)]
        options += [around(limit) for limit in (low, high) if limit is not None]
    elif kind == "string":
        # A final "\n" after `$` (from_regex without fullmatch), characters whose `\s`-ness Rust and Python
        # disagree on, lengths either side of each limit.
        options += [st.from_regex(schema["pattern"])] if "pattern" in schema else []
        options.append(st.tuples(fitting, st.sampled_from(TRICKY), st.integers(0, 100)).map(
            lambda drawn: with_tricky_character(*drawn)))
        options += [st.tuples(fitting.filter(bool), around(limit)).map(lambda drawn: oracle.stretched(*drawn))
                    for limit in (schema.get("minLength"), schema.get("maxLength")) if limit is not None]
    elif kind == "array":
        items = valid(schema.get("items", {}), root)
        options += [st.lists(near_valid(schema.get("items", {}), root), max_size=8), st.lists(JSON_SCALARS, max_size=4)]
        options += [st.tuples(items, around(limit)).map(lambda drawn: [drawn[0]] * max(drawn[1], 0))
                    for limit in (schema.get("minItems"), schema.get("maxItems")) if limit is not None]
    elif kind == "object" and "properties" in schema:
        options.append(st.fixed_dictionaries({key: near_valid(value, root)
                                              for key, value in schema["properties"].items()}))
    return st.one_of(options)


def near_valid(schema: dict, root: dict) -> st.SearchStrategy:
    """About three draws in four valid, so that calls of several fields are often valid as a whole."""
    fitting, past = valid(schema, root), past_the_limits(schema, root)
    return st.integers(0, 3).flatmap(lambda choice: past if choice == 3 else fitting)


@functools.cache
def field_values(name: str, field: str) -> st.SearchStrategy:
    """Built once per field: building regex strategies costs more than drawing from them."""
    return near_valid(SCHEMAS[name]["properties"][field], SCHEMAS[name])


@st.composite
def calls(draw, name: str, near: bool):
    """(args, kwargs) as a producer could send them: values split between positions and names, sometimes with
    fields missing, duplicated, unknown or too many."""
    fields = oracle.fields(SCHEMAS[name])
    values = {field: draw(field_values(name, field) if near else JSON_VALUES) for field in fields}
    if draw(st.integers(0, 9)) == 0:
        values.pop(draw(st.sampled_from(fields)))
    split = draw(st.integers(0, len(values)))
    ordered = [field for field in fields if field in values]
    args = [values[field] for field in ordered[:split]]
    kwargs = {field: values[field] for field in ordered[split:]}
    mutation = draw(st.integers(0, 19))
    if mutation == 0:
        kwargs[draw(st.text(min_size=1, max_size=8))] = draw(JSON_SCALARS)
    elif mutation == 1:
        args.append(draw(JSON_SCALARS))
    elif mutation == 2 and args:
        kwargs[fields[0]] = args[0]
    return args, kwargs


# --------------------------------------------------------------------------------------------- properties
@contextmanager
def spy_on_body(task):
    seen = []
    original = task.run
    task.run = lambda **values: seen.append(values) or "ran"
    try:
        yield seen
    finally:
        task.run = original


@pytest.mark.parametrize("name", TASKS)
def test_each_task_schema_is_its_signature(name):
    """The oracle reads the JSON Schema; this ties that schema to the parameters the body really takes."""
    task, schema = app.tasks[name], SCHEMAS[name]
    parameters = inspect.signature(task.run).parameters.values()
    assert oracle.fields(schema) == [parameter.name for parameter in parameters]
    assert set(schema.get("required", ())) == {p.name for p in parameters if p.default is p.empty}
    assert schema.get("additionalProperties") is False, "unknown fields must be refused"


def check(name: str, args: list, kwargs: dict) -> None:
    task, schema = app.tasks[name], SCHEMAS[name]
    expected = oracle.accepts(schema, args, kwargs)
    try:
        validated = validate_arguments(name, task.schema, args, kwargs)
    except errors.InvalidTaskArguments as exc:
        assert not expected, f"refused valid arguments {args!r} {kwargs!r}: {exc}"
        assert len(str(exc)) <= 500
    else:
        assert expected, f"accepted invalid arguments {args!r} {kwargs!r}"
        given_values = oracle.bind(schema, args, kwargs)
        assert {field: revealed(validated[field]) for field in given_values} == given_values
    # The worker path (ValidatedTask.__call__): the body runs only with valid values, passed on unchanged.
    with spy_on_body(task) as seen:
        try:
            assert task(*args, **kwargs) == "ran"
        except errors.InvalidTaskArguments:
            assert seen == [] and not expected
        else:
            assert expected and len(seen) == 1
            assert all(type(seen[0][field]) is type(value) for field, value in validated.items())
            assert all(oracle.Oracle(oracle.field_schema(schema, field)).is_valid(revealed(value))
                       for field, value in seen[0].items())


@pytest.mark.parametrize("name", TASKS)
def test_near_valid_arguments_are_judged_exactly_like_the_schema(name):
    @FUZZ
    @given(call=calls(name, near=True))
    def run(call):
        check(name, *call)
    run()


@pytest.mark.parametrize("name", TASKS)
def test_arbitrary_json_arguments_never_reach_the_body_unvalidated(name):
    @FUZZ
    @given(call=calls(name, near=False))
    def run(call):
        check(name, *call)
    run()


@pytest.mark.parametrize("name", TASKS)
def test_args_and_kwargs_of_the_wrong_shape_are_refused(name):
    task = app.tasks[name]
    for args, kwargs in ((None, {}), ("abc", {}), ({"x": 1}, {}), ([], []), ([], "x=1"), ([], None)):
        with pytest.raises(errors.InvalidTaskArguments):
            validate_arguments(name, task.schema, args, kwargs)


def test_the_oracle_reads_patterns_as_pydantic_does():
    """The two known gaps between Python's re (jsonschema) and pydantic's Rust regexes, handled by the oracle."""
    identifier = {"type": "string", "pattern": r"^[a-z]+$"}
    assert oracle.Oracle(identifier).is_valid("abc") and not oracle.Oracle(identifier).is_valid("abc\n")
    no_space = {"type": "string", "pattern": r"^[^\s]+$"}
    assert oracle.Oracle(no_space).is_valid("a\x1cb") and not oracle.Oracle(no_space).is_valid("a\u00a0b")
    integer = {"type": "integer"}
    assert not oracle.Oracle(integer).is_valid(1.0) and not oracle.Oracle(integer).is_valid(True)
