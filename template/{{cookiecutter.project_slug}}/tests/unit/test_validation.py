"""Every task validates its arguments before the body runs (VAL-01, VAL-02)."""
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from {{ cookiecutter.package_name }} import errors
from {{ cookiecutter.package_name }}.celery_app import app
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


def test_validate_arguments_rejects_non_list_args():
    with pytest.raises(errors.InvalidTaskArguments, match="args must be a list"):
        validate_arguments("t", add.schema, "not-a-list", {})
