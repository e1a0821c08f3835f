"""Who may run what, and where (TEN-03): a task runs only on a queue that lists its module and on a worker whose
tenant lists it; anything else is dead-lettered as not allowed (intake.py), never run.

Publish rights cannot say this: any producer may publish any task name into any queue of its vhost, so without
these lists the analytics producer could run `record_payment`, or push bulk work onto the priority queue.

* Per queue, here: routing follows it (config.task_routes), so a message on the wrong queue was forged.
* Per tenant, in compose.yaml: each worker service's TASKS_ALLOWED_TASK_MODULES, written by tools/tenants.py from
  stack.toml's [workers.restricted_task_modules] (at bake time: the `payment_vhosts` answer). A worker without the variable, or naming a module that does not exist, refuses to
  start: an allow-list that is missing or mistyped must not silently allow everything, nor nothing.
"""
import os

from . import errors, topology

TASKS_PACKAGE = "{{ cookiecutter.package_name }}.tasks"
ENVIRONMENT_VARIABLE = "TASKS_ALLOWED_TASK_MODULES"
# Payments jump the line on the priority queue; nothing else may sit there, and they never wait behind bulk work.
QUEUE_TASK_MODULES = {
    topology.TASK_QUEUE: ("accounts", "arithmetic", "notifications", "reports", "text"),
    topology.PRIORITY_QUEUE: ("payments",),
}
TASK_MODULES = frozenset(module for modules in QUEUE_TASK_MODULES.values() for module in modules)


def task_module(name: str) -> str | None:
    """`<package>.tasks.payments.record_payment` -> `payments`; None for a name outside the project's tasks."""
    prefix = TASKS_PACKAGE + "."
    if not isinstance(name, str) or not name.startswith(prefix):
        return None
    return name[len(prefix):].split(".", 1)[0]


def queue_for_module(module: str) -> str:
    return next(queue for queue, modules in QUEUE_TASK_MODULES.items() if module in modules)


def tenant_modules_from_env() -> frozenset[str]:
    """This worker's tenant allow-list; refuses to start without one, or with a module that does not exist."""
    raw = os.environ.get(ENVIRONMENT_VARIABLE)
    if raw is None:
        raise errors.ImproperlyConfigured(errors.MISSING_SETTING.format(name=ENVIRONMENT_VARIABLE))
    modules = frozenset(module.strip() for module in raw.split(",") if module.strip())
    unknown = sorted(modules - TASK_MODULES)
    if unknown:
        raise errors.ImproperlyConfigured(errors.UNKNOWN_TASK_MODULES.format(
            name=ENVIRONMENT_VARIABLE, unknown=", ".join(unknown), known=", ".join(sorted(TASK_MODULES))))
    return modules


def refusal(task_name: str, queue: str | None, tenant_modules: frozenset[str]) -> str | None:
    """Why this worker must not run `task_name` taken from `queue`, or None."""
    module = task_module(task_name)
    if module not in tenant_modules:
        return f"task {str(task_name)[:80]!r} is not allowed for this tenant (allowed: {', '.join(sorted(tenant_modules))})"
    if queue is None:
        return f"task {str(task_name)[:80]!r} did not reach a task queue through the task or default exchange"
    if module not in QUEUE_TASK_MODULES.get(queue, ()):
        return f"task {str(task_name)[:80]!r} is not allowed on queue {str(queue)[:40]!r}"
    return None

