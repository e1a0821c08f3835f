"""The workers' audit fields: the tenant read from the broker URL, and never an exception from a logging call."""
import logging
from types import SimpleNamespace

from {{ cookiecutter.package_name }} import audit


def app_with(broker_url) -> SimpleNamespace:
    return SimpleNamespace(conf=SimpleNamespace(broker_url=broker_url))   # what audit reads of a Celery app


def test_the_tenant_is_the_vhost_of_the_broker_url():
    assert audit.tenant_of(app_with("amqps://billing-worker@broker:5671/billing")) == "billing"
    assert audit.fields(app_with("amqps://u@broker:5671/analytics"), audit.ARGUMENTS, task="t") == {
        "audit": {"event": "arguments.refused", "tenant": "analytics", "task": "t"}}


def test_an_unreadable_broker_url_gives_no_tenant_and_no_exception(caplog):
    app = app_with(object())
    assert audit.tenant_of(app) is None
    with caplog.at_level(logging.ERROR):
        audit.log(logging.getLogger("test"), app, audit.MESSAGE, "refused %s", "x")
    assert caplog.records[0].audit == {"event": "message.refused", "tenant": None}
