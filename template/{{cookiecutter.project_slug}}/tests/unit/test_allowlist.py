"""Who may run what (TEN-03): every task has exactly one queue, routing agrees with it, and the rules refuse
exactly what they should; a worker without a valid tenant allow-list refuses to start."""
import pytest

from {{ cookiecutter.package_name }} import allowlist, errors, topology
from {{ cookiecutter.package_name }}.celery_app import app

pytestmark = pytest.mark.controls("TEN-03")
PAYMENT = f"{allowlist.TASKS_PACKAGE}.payments.record_payment"
ADD = f"{allowlist.TASKS_PACKAGE}.arithmetic.add"
EVERYTHING = allowlist.TASK_MODULES
NO_PAYMENTS = EVERYTHING - {"payments"}


def project_tasks() -> list[str]:
    return sorted(name for name in app.tasks if not name.startswith("celery."))


def test_every_task_module_has_exactly_one_queue_and_is_routed_there():
    listed = [module for modules in allowlist.QUEUE_TASK_MODULES.values() for module in modules]
    assert len(listed) == len(set(listed)), "a module is listed under two queues"
    assert set(allowlist.QUEUE_TASK_MODULES) == set(topology.TASK_QUEUES)
    for name in project_tasks():
        module = allowlist.task_module(name)
        assert module in EVERYTHING, f"{name} belongs to no queue in allowlist.QUEUE_TASK_MODULES"
        assert app.amqp.router.route({}, name)["queue"].name == allowlist.queue_for_module(module), name


@pytest.mark.parametrize("task, queue, tenant, rule", [
    (PAYMENT, topology.PRIORITY_QUEUE, NO_PAYMENTS, "is not allowed for this tenant"),
    (ADD, topology.PRIORITY_QUEUE, EVERYTHING, "is not allowed on queue 'priority'"),
    (PAYMENT, topology.TASK_QUEUE, EVERYTHING, "is not allowed on queue 'tasks'"),
    (ADD, None, EVERYTHING, "did not reach a task queue through the task or default exchange"),
    ("celery.chord_unlock", topology.TASK_QUEUE, EVERYTHING, "is not allowed for this tenant"),
    (ADD, topology.TASK_QUEUE, frozenset(), "is not allowed for this tenant"),
])
def test_a_task_outside_the_lists_is_refused_naming_the_rule(task, queue, tenant, rule):
    assert rule in allowlist.refusal(task, queue, tenant)


@pytest.mark.parametrize("task, queue, tenant", [
    (PAYMENT, topology.PRIORITY_QUEUE, EVERYTHING), (ADD, topology.TASK_QUEUE, NO_PAYMENTS)])
def test_a_task_inside_the_lists_is_allowed(task, queue, tenant):
    assert allowlist.refusal(task, queue, tenant) is None


def test_a_worker_without_a_tenant_allow_list_refuses_to_start(monkeypatch):
    monkeypatch.delenv(allowlist.ENVIRONMENT_VARIABLE, raising=False)
    with pytest.raises(errors.ImproperlyConfigured, match=f"{allowlist.ENVIRONMENT_VARIABLE} is not set"):
        allowlist.tenant_modules_from_env()


def test_a_mistyped_module_stops_the_worker_naming_it(monkeypatch):
    monkeypatch.setenv(allowlist.ENVIRONMENT_VARIABLE, "arithmetic,payment")
    with pytest.raises(errors.ImproperlyConfigured, match="names payment, which are not task modules"):
        allowlist.tenant_modules_from_env()


def test_the_tenant_list_is_read_as_written(monkeypatch):
    monkeypatch.setenv(allowlist.ENVIRONMENT_VARIABLE, " arithmetic, text ,")
    assert allowlist.tenant_modules_from_env() == {"arithmetic", "text"}
