"""Sensitive arguments (SecretStr parameters) are masked in the headers Celery repeats them in (LOG-01)."""
import pytest

from tests.unit.unit_app import app
from {{ cookiecutter.package_name }} import redaction
from {{ cookiecutter.package_name }}.tasks.accounts import set_api_token
from {{ cookiecutter.package_name }}.tasks.arithmetic import add

pytestmark = pytest.mark.controls("LOG-01")
CANARY = "canary-secret-0123456789abcdef"


def test_secret_typed_parameters_are_the_sensitive_ones():
    assert redaction.sensitive_fields(set_api_token.schema) == {"token"}
    assert redaction.sensitive_fields(add.schema) == frozenset()


@pytest.mark.parametrize("call", [((7, CANARY), {}), ((7,), {"token": CANARY}), ((), {"account_id": 7, "token": CANARY})],
                         ids=["positional", "mixed", "keywords"])
def test_the_producer_sends_the_secret_masked_in_the_headers(monkeypatch, call):
    sent = {}
    monkeypatch.setattr(app, "send_task", lambda name, args, kwargs, **options: sent.update(options, args=args,
                                                                                               kwargs=kwargs))
    set_api_token.apply_async(*call)
    shown = sent["argsrepr"] + sent["kwargsrepr"]
    assert CANARY not in shown and redaction.MASK in shown and "7" in shown
    assert CANARY in [*sent["args"], *sent["kwargs"].values()]     # the body still carries it, for the task


def test_other_arguments_are_shown_as_celery_shows_them(monkeypatch):
    sent = {}
    monkeypatch.setattr(app, "send_task", lambda name, args, kwargs, **options: sent.update(options))
    add.apply_async((2, 3))
    assert (sent["argsrepr"], sent["kwargsrepr"]) == ("[2, 3]", "{}")


def test_the_task_body_gets_a_secret_whose_repr_is_masked():
    values = set_api_token.schema.model_validate({"account_id": 7, "token": CANARY})
    assert CANARY not in repr(values) and values.token.get_secret_value() == CANARY
