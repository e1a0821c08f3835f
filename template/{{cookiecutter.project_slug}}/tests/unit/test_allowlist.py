"""Who may run what (TEN-03): every task declares a task queue, routing agrees with it, and the rules refuse
exactly what they should; a worker without a valid tenant allow-list refuses to start."""
import pytest

from {{ cookiecutter.package_name }} import allowlist, errors, topology
from tests.unit.unit_app import app

pytestmark = pytest.mark.controls("TEN-03")
PAYMENT = app.tasks[f"{allowlist.TASKS_PACKAGE}.payments.record_payment"]
ADD = app.tasks[f"{allowlist.TASKS_PACKAGE}.arithmetic.add"]
EVERYTHING = frozenset(topology.TASK_QUEUES)
NO_PAYMENTS = frozenset({topology.TASK_QUEUE})


def project_tasks() -> list[str]:
    return sorted(name for name in app.tasks if not name.startswith("celery."))


@pytest.mark.parametrize("name", project_tasks())
def test_every_task_declares_a_task_queue_and_is_routed_there(name):
    task = app.tasks[name]
    queue = allowlist.declared_queue(task)
    assert queue in topology.TASK_QUEUES, f"{name} declares queue {queue!r}, which is not a task queue"
    # Celery routes with the registry's task object, from apply_async and from send_task by name alike.
    assert app.amqp.router.route({}, name, task_type=task)["queue"].name == queue


def test_payments_are_alone_on_the_priority_queue():
    assert [name for name in project_tasks()
            if allowlist.declared_queue(app.tasks[name]) == topology.PRIORITY_QUEUE] == [PAYMENT.name]


@pytest.mark.parametrize("task, queue, tenant, rule", [
    (PAYMENT, topology.PRIORITY_QUEUE, NO_PAYMENTS, "is not allowed for this tenant"),
    (ADD, topology.PRIORITY_QUEUE, EVERYTHING, "is not allowed on queue 'priority'"),
    (PAYMENT, topology.TASK_QUEUE, EVERYTHING, "is not allowed on queue 'tasks'"),
    (ADD, None, EVERYTHING, "did not reach a task queue through the task or default exchange"),
    (app.tasks["celery.chord_unlock"], topology.TASK_QUEUE, EVERYTHING, "is not allowed for this tenant"),
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
        allowlist.tenant_queues_from_env()


def test_a_mistyped_queue_stops_the_worker_naming_it(monkeypatch):
    monkeypatch.setenv(allowlist.ENVIRONMENT_VARIABLE, "tasks,priorty")
    with pytest.raises(errors.ImproperlyConfigured, match="names priorty, which are not task queues"):
        allowlist.tenant_queues_from_env()


def test_the_tenant_list_is_read_as_written(monkeypatch):
    monkeypatch.setenv(allowlist.ENVIRONMENT_VARIABLE, " tasks, priority ,")
    assert allowlist.tenant_queues_from_env() == {"tasks", "priority"}
