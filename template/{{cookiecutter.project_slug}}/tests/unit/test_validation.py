"""Every task validates its arguments before the body runs (VAL-01, VAL-02)."""
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from {{ cookiecutter.package_name }} import errors
from tests.unit.unit_app import app
from {{ cookiecutter.package_name }}.tasks.arithmetic import add
from {{ cookiecutter.package_name }}.tasks.reports import sum_chunk
from {{ cookiecutter.package_name }}.validation import RequireSchemas, ValidatedTask, require_schemas, validate_arguments

pytestmark = pytest.mark.controls("VAL-01", "VAL-02")


def test_valid_call_runs_the_body():
    assert add(2, 3) == 5
    assert add(x=2, y=3) == 5


@pytest.mark.parametrize("args, kwargs, field, reason", [
    (("two", 3), {}, "x", "valid integer"),
    ((2,), {}, "y", "Field required"),
    ((2, 3), {"z": 1}, "z", "Extra inputs are not permitted"),
    ((True, 3), {}, "x", "valid integer"),
    ((10**13, 3), {}, "x", "less than or equal"),
])
def test_invalid_arguments_name_the_field(args, kwargs, field, reason):
    with pytest.raises(errors.InvalidTaskArguments) as caught:
        add(*args, **kwargs)
    assert f"{field}: " in str(caught.value) and reason in str(caught.value)
    assert "{{ cookiecutter.package_name }}.tasks.arithmetic.add" in str(caught.value)


def test_oversized_list_is_refused():
    with pytest.raises(errors.InvalidTaskArguments, match="numbers: List should have at most 1000 items"):
        sum_chunk(list(range(1001)))


def test_too_many_positional_arguments():
    with pytest.raises(errors.InvalidTaskArguments, match="at most 2 positional"):
        add(1, 2, 3)


def test_argument_given_twice():
    with pytest.raises(errors.InvalidTaskArguments, match="x: given both"):
        add(1, x=2)


def test_body_never_runs_on_invalid_input(monkeypatch):
    calls = []
    monkeypatch.setattr(type(add._get_current_object()), "run", lambda self, x, y: calls.append((x, y)))
    with pytest.raises(errors.InvalidTaskArguments):
        add("1", 2)
    assert calls == []


def test_producer_side_refuses_before_publishing():
    with pytest.raises(errors.InvalidTaskArguments, match="x: Input should be a valid integer"):
        add.delay("two", 3)


def test_error_message_does_not_echo_input():
    with pytest.raises(errors.InvalidTaskArguments) as caught:
        add("secret-value-123", 3)
    assert "secret-value-123" not in str(caught.value)


def test_every_registered_task_has_a_schema():
    require_schemas(app)  # the app's own tasks pass (nothing checked them at import)
    ours = [name for name in app.tasks if not name.startswith("celery.")]
    assert len(ours) >= 7


@pytest.mark.parametrize("name", sorted(name for name in app.tasks if not name.startswith("celery.")))
def test_every_task_is_in_a_task_module_with_a_valid_example(name):
    """The live tests find tasks by module and run each one's example (tests/security/test_validation.py)."""
    task = app.tasks[name]
    assert task.__module__.startswith("{{ cookiecutter.package_name }}.tasks.") and name.startswith(task.__module__)
    assert task.example is not None, f"{name} declares no example (@shared_task(example=Example(...)))"
    validate_arguments(name, task.schema, (), task.example.kwargs)


def test_the_worker_runs_the_schema_check_when_it_is_built():
    assert RequireSchemas in app.steps["worker"]


def test_worker_start_is_refused_while_a_task_lacks_a_schema():
    worker = SimpleNamespace(app=app)

    @app.task(name="{{ cookiecutter.package_name }}.tasks.unchecked", shared=False)
    def unchecked(value):
        return value

    try:
        with pytest.raises(errors.ImproperlyConfigured, match="'{{ cookiecutter.package_name }}.tasks.unchecked' declares no input schema"):
            RequireSchemas(worker)
    finally:
        del app.tasks["{{ cookiecutter.package_name }}.tasks.unchecked"]
    RequireSchemas(worker)                        # without it, the worker is built


def test_task_without_schema_is_a_startup_error():
    from celery import Celery
    other = Celery("schemaless", task_cls=ValidatedTask, set_as_current=False)

    @other.task(name="schemaless.noop", shared=False)
    def noop(value):
        return value

    with pytest.raises(errors.ImproperlyConfigured, match="declares no input schema"):
        require_schemas(other)


def test_schema_that_does_not_match_parameters_is_a_startup_error():
    from celery import Celery
    other = Celery("mismatch", task_cls=ValidatedTask, set_as_current=False)

    class Wrong(BaseModel):
        a: int

    @other.task(name="mismatch.echo", schema=Wrong, shared=False)
    def echo(value):
        return value

    with pytest.raises(errors.ImproperlyConfigured, match="do not match the task parameters"):
        require_schemas(other)


def test_the_schema_is_built_from_the_typed_signature():
    assert list(add.schema.model_fields) == ["x", "y"]
    assert add.schema.model_config["extra"] == "forbid" and add.schema.model_config["strict"]
    assert add.schema.model_config["frozen"]
    assert sum_chunk.schema.model_json_schema()["properties"]["numbers"]["maxItems"] == 1000


def untyped(value):
    return value


def typed_any(value: Any):
    return value


def open_list(values: Annotated[list, Field(max_length=3)]):
    return values


def open_items(values: list[Any]):
    return values


def star_args(x: int, *rest: int):
    return x


def star_kwargs(x: int, **options: int):
    return x


def positional_only(x: int, /):
    return x


def unresolved(x: "NoSuchType"):  # noqa: F821 - the point of the test
    return x


@pytest.mark.parametrize("function, reason", [
    (untyped, "parameter 'value' has no type annotation"),
    (typed_any, "parameter 'value' is typed typing.Any, which accepts anything"),
    (open_list, "parameter 'values' is typed"),
    (open_items, "parameter 'values' is typed list[typing.Any]"),
    (star_args, "parameter *rest: int is not a named parameter"),
    (star_kwargs, "parameter **options: int is not a named parameter"),
    (positional_only, "parameter x: int is not a named parameter"),
    (unresolved, "its annotations do not resolve (NameError"),
])
def test_a_signature_that_bounds_nothing_stops_the_worker_naming_the_parameter(function, reason):
    from celery import Celery
    other = Celery("unbounded", task_cls=ValidatedTask, set_as_current=False)
    other.task(name="unbounded.task", shared=False)(function)
    with pytest.raises(errors.ImproperlyConfigured) as caught:
        require_schemas(other)
    assert "'unbounded.task' declares no input schema" in str(caught.value) and reason in str(caught.value)


def test_defaults_bound_tasks_and_explicit_schemas_are_understood():
    from celery import Celery
    other = Celery("signatures", task_cls=ValidatedTask, set_as_current=False)

    @other.task(name="signatures.bound", bind=True, shared=False)
    def bound(self, count: Annotated[int, Field(ge=0)], label: str = "none"):
        return self.name, count, label

    class Explicit(BaseModel):
        value: int

    @other.task(name="signatures.explicit", schema=Explicit, shared=False)
    def explicit(value):
        return value

    require_schemas(other)
    assert bound(2) == ("signatures.bound", 2, "none") and bound(2, label="x")[2] == "x"
    with pytest.raises(errors.InvalidTaskArguments, match="count: Input should be greater than or equal to 0"):
        bound(-1)
    assert explicit.schema is Explicit and explicit(value=3) == 3


def test_validate_arguments_rejects_non_list_args():
    with pytest.raises(errors.InvalidTaskArguments, match="args must be a list"):
        validate_arguments("t", add.schema, "not-a-list", {})
