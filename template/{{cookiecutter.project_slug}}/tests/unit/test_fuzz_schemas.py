"""Fuzzing the task schemas (VAL-02): thousands of generated argument lists per task.

For every task, the validator must accept exactly what an independent reading of its schema allows (the
oracle below, written from schemas.py, not derived from pydantic), must raise nothing but
InvalidTaskArguments otherwise, and the task body must only ever see validated values, unchanged.
Values are JSON types only: that is all a worker can receive (JSON-only accept_content).
"""
import os
import re
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package_name }} import errors
from {{ cookiecutter.package_name }}.celery_app import app
from {{ cookiecutter.package_name }}.validation import validate_arguments

# Per task and property (2 properties x 7 tasks x 1000 = 14,000 argument lists by default; FUZZ_EXAMPLES=5000 for more).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------------------------- oracle
# Unicode White_Space (what `\s` means in pydantic's Rust regex engine; Python's `\s` also matches \x1c-\x1f).
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
              "\u2028\u2029\u202f\u205f\u3000"
NOT_AT_OR_SPACE = "[^@" + re.escape(WHITE_SPACE) + "]"
EMAIL = re.compile(NOT_AT_OR_SPACE + "+@" + NOT_AT_OR_SPACE + r"+\.[A-Za-z]{2,}")
IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "JPY")
AMOUNT = 10**12


def integer(value, low, high) -> bool:
    return type(value) is int and low <= value <= high          # strict: True is not 1, 1.0 is not 1


def string(value, min_length=0, max_length=None, pattern=None) -> bool:
    return (type(value) is str and len(value) >= min_length and (max_length is None or len(value) <= max_length)
            and (pattern is None or pattern.fullmatch(value) is not None))


def amount(value) -> bool:
    return integer(value, -AMOUNT, AMOUNT)


ORACLE = {
    "arithmetic.add": {"x": amount, "y": amount},
    "accounts.activate_account": {"account_id": lambda v: integer(v, 1, 2**63 - 1)},
    "payments.record_payment": {
        "payment_id": lambda v: string(v, pattern=IDENTIFIER),
        "amount_cents": lambda v: integer(v, 1, 100_000_000_00),
        "currency": lambda v: type(v) is str and v in CURRENCIES,
    },
    "reports.sum_chunk": {"numbers": lambda v: type(v) is list and len(v) <= 1000 and all(map(amount, v))},
    "text.normalize_text": {"text": lambda v: string(v, max_length=10_000)},
    "text.count_words": {"text": lambda v: string(v, max_length=10_000)},
    "notifications.deliver_notification": {
        "notification_id": lambda v: string(v, pattern=IDENTIFIER),
        "recipient": lambda v: string(v, max_length=254, pattern=EMAIL),
        "subject": lambda v: string(v, min_length=1, max_length=200),
        "body": lambda v: string(v, max_length=65_536),
    },
}
TASKS = {f"{{ cookiecutter.package_name }}.tasks.{short}": fields for short, fields in ORACLE.items()}


def oracle_accepts(name: str, args: list, kwargs: dict) -> bool:
    fields = list(TASKS[name])
    if len(args) > len(fields) or any(key in fields[:len(args)] for key in kwargs):
        return False
    values = {**dict(zip(fields, args)), **kwargs}
    return set(values) == set(fields) and all(TASKS[name][field](values[field]) for field in fields)


# --------------------------------------------------------------------------------------------- strategies
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=12)


def around(limit: int) -> st.SearchStrategy:
    return st.integers(limit - 2, limit + 2)


def long_text(limit: int) -> st.SearchStrategy:
    return around(limit).map(lambda n: "w " * (max(n, 0) // 2) + "w" * (max(n, 0) % 2))


AMOUNTS = st.one_of(st.integers(-AMOUNT, AMOUNT), around(AMOUNT), around(-AMOUNT), st.booleans(),
                    st.floats(-1e13, 1e13, allow_nan=False))
NEAR_VALID = {   # per field: valid values, values just past each limit, and look-alikes of other types
    "x": AMOUNTS, "y": AMOUNTS,
    "account_id": st.one_of(st.integers(-3, 2**64), around(2**63), st.just(True), st.text(max_size=3)),
    "payment_id": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,66}", fullmatch=True), st.text(max_size=70),
                            st.from_regex(r"[A-Za-z0-9]{1,5}\n", fullmatch=True)),
    "notification_id": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,66}", fullmatch=True), st.text(max_size=70)),
    "amount_cents": st.one_of(st.integers(-2, 10**11 + 2), around(100_000_000_00), st.floats(0, 1e11)),
    "currency": st.one_of(st.sampled_from(CURRENCIES), st.sampled_from(["eur", "EUR ", "XBT", ""]), st.text(max_size=4)),
    "numbers": st.one_of(st.lists(AMOUNTS, max_size=8), around(1000).map(lambda n: [1] * n),
                         st.lists(JSON_SCALARS, max_size=4)),
    "text": st.one_of(st.text(max_size=50), long_text(10_000), st.binary(max_size=5).map(list)),
    "recipient": st.one_of(st.from_regex(r"[a-z\x1c\u00a0 ]{1,8}@[a-z.]{1,8}\.[A-Za-z]{1,3}", fullmatch=True),
                           st.text(max_size=30), around(254).map(lambda n: "a" * (n - 10) + "@b.example")),
    "subject": st.one_of(st.text(max_size=20), long_text(200), st.just("")),
    "body": st.one_of(st.text(max_size=20), long_text(65_536)),
}


@st.composite
def calls(draw, name: str, near_valid: bool):
    """(args, kwargs) as a producer could send them: values split between positions and names, sometimes with
    fields missing, duplicated, unknown or too many."""
    fields = list(TASKS[name])
    values = {field: draw(NEAR_VALID[field] if near_valid else JSON_VALUES) for field in fields}
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


@contextmanager
def spy_on_body(task):
    seen = []
    original = task.run
    task.run = lambda **values: seen.append(values) or "ran"
    try:
        yield seen
    finally:
        task.run = original


def test_the_oracle_covers_every_task():
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == set(TASKS), "a task was added or renamed: describe its schema in ORACLE"
    for name, fields in TASKS.items():
        assert list(app.tasks[name].schema.model_fields) == list(fields)


def check(name: str, args: list, kwargs: dict) -> None:
    task = app.tasks[name]
    expected = oracle_accepts(name, args, kwargs)
    try:
        validated = validate_arguments(name, task.schema, args, kwargs)
    except errors.InvalidTaskArguments as exc:
        assert not expected, f"refused valid arguments {args!r} {kwargs!r}: {exc}"
        assert len(str(exc)) <= 500
    else:
        assert expected, f"accepted invalid arguments {args!r} {kwargs!r}"
        assert validated == {**dict(zip(TASKS[name], args)), **kwargs}
    # The worker path (ValidatedTask.__call__): the body runs only with valid values, passed on unchanged.
    with spy_on_body(task) as seen:
        try:
            assert task(*args, **kwargs) == "ran"
        except errors.InvalidTaskArguments:
            assert seen == [] and not expected
        else:
            assert expected and len(seen) == 1
            assert all(type(seen[0][field]) is type(value) for field, value in validated.items())
            assert all(TASKS[name][field](value) for field, value in seen[0].items())


@pytest.mark.parametrize("name", sorted(TASKS))
def test_near_valid_arguments_are_judged_exactly_like_the_schema(name):
    @FUZZ
    @given(call=calls(name, near_valid=True))
    def run(call):
        check(name, *call)
    run()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_arbitrary_json_arguments_never_reach_the_body_unvalidated(name):
    @FUZZ
    @given(call=calls(name, near_valid=False))
    def run(call):
        check(name, *call)
    run()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_args_and_kwargs_of_the_wrong_shape_are_refused(name):
    task = app.tasks[name]
    for args, kwargs in ((None, {}), ("abc", {}), ({"x": 1}, {}), ([], []), ([], "x=1"), ([], None)):
        with pytest.raises(errors.InvalidTaskArguments):
            validate_arguments(name, task.schema, args, kwargs)
