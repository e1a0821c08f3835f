"""Who may run what, and where (TEN-03): a task runs only from the queue it declares and only on a worker whose
tenant allows that queue; anything else is dead-lettered as not allowed (intake.py), never run.

Publish rights cannot say this: any producer may publish any task name into any queue of its vhost, so without
these rules the analytics producer could run `record_payment`, or push bulk work onto the priority queue.

* Per task, beside it: `@shared_task(on_queue=...)` names its queue (the ordinary task queue when it names none);
  routing follows it (config.task_routes), so a message on another queue was forged.
* Per tenant, in compose.yaml: each worker service's TASKS_ALLOWED_QUEUES, written by tools/tenants.py from
  stack.toml's [workers] priority_vhosts (at bake time: the `payment_vhosts` answer; those tenants also run the
  priority queue's tasks). A worker without the variable, or
  naming a queue that does not exist, refuses to start: an allow-list that is missing or mistyped must not
  silently allow everything, nor nothing.

Tenants are told apart by queue rather than by task so that adding a task touches its own module only: a new
task on the ordinary queue runs for every tenant, one on the priority queue for the payment tenants only.
"""
import os

from . import errors, topology

TASKS_PACKAGE = "{{ cookiecutter.package_name }}.tasks"
ENVIRONMENT_VARIABLE = "TASKS_ALLOWED_QUEUES"


def declared_queue(task) -> str | None:
    """The queue a task of ours runs from; None for a task outside the project's tasks package (Celery's own)."""
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name.startswith(TASKS_PACKAGE + "."):
        return None
    return getattr(task, "on_queue", None) or topology.TASK_QUEUE


def tenant_queues_from_env() -> frozenset[str]:
    """This worker's tenant allow-list; refuses to start without one, or with a queue that does not exist."""
    raw = os.environ.get(ENVIRONMENT_VARIABLE)
    if raw is None:
        raise errors.ImproperlyConfigured(errors.MISSING_SETTING.format(name=ENVIRONMENT_VARIABLE))
    queues = frozenset(queue.strip() for queue in raw.split(",") if queue.strip())
    unknown = sorted(queues - set(topology.TASK_QUEUES))
    if unknown:
        raise errors.ImproperlyConfigured(errors.UNKNOWN_QUEUES.format(
            name=ENVIRONMENT_VARIABLE, unknown=", ".join(unknown), known=", ".join(topology.TASK_QUEUES)))
    return queues


def refusal(task, queue: str | None, tenant_queues: frozenset[str]) -> str | None:
    """Why this worker must not run `task` (the registry's task object) taken from `queue`, or None."""
    home, name = declared_queue(task), str(getattr(task, "name", task))[:80]
    if home not in tenant_queues:
        return f"task {name!r} is not allowed for this tenant (allowed queues: {', '.join(sorted(tenant_queues))})"
    if queue is None:
        return f"task {name!r} did not reach a task queue through the task or default exchange"
    if queue != home:
        return f"task {name!r} is not allowed on queue {str(queue)[:40]!r}"
    return None
