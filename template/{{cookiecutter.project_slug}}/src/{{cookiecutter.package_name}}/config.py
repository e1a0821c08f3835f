"""The Celery settings: secure defaults, each with the attack or failure it prevents."""
from kombu import Exchange, Queue

from . import allowlist, topology
from .broker_settings import BrokerSettings

JSON_ONLY = ["json"]


def task_queues() -> tuple[Queue, ...]:
    # no_declare: the broker declares queues and the exchange from its definitions file; clients hold no
    # configure right. Each queue is bound to the task exchange under its own name. (With a direct exchange
    # Celery would publish through the default exchange instead, which producers may not write to.)
    exchange = Exchange(topology.TASK_EXCHANGE, type=topology.TASK_EXCHANGE_TYPE, no_declare=True)
    return tuple(Queue(name, exchange, routing_key=name, no_declare=True) for name in topology.TASK_QUEUES)


def route_to_declared_queue(name, args, kwargs, options, task=None, **_):
    """Celery router: a task goes to the queue it declares (allowlist.declared_queue; workers refuse it anywhere
    else), a priority-queue task with a high priority. Celery hands routers the registry's task object, also
    for `send_task` by name; a name it does not know goes to the default queue."""
    queue = allowlist.declared_queue(task) if task is not None else None
    if queue is None or queue == topology.TASK_QUEUE:
        return None
    return {"queue": queue, "priority": topology.MAX_PRIORITY - 1}


def build_config(broker: BrokerSettings) -> dict:
    return {
        # --- transport: TLS with mutual authentication, credentials from files ---
        "broker_url": broker.connection_url(),
        "broker_login_method": broker.login_method,
        "broker_use_ssl": broker.ssl_options(),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": 100,
        "broker_heartbeat": 30,                               # notice a dead broker within a minute
        # confirm_publish: a publish the broker refused raises; authentication: password login's credential file
        "broker_transport_options": {"confirm_publish": True, "authentication": broker.authentication()},
        # --- serialization: JSON only, everywhere (pickle/yaml run code on decode) ---
        "accept_content": JSON_ONLY,
        "task_serializer": "json",
        "result_serializer": "json",
        "result_accept_content": JSON_ONLY,
        "event_serializer": "json",
        # --- results ---
        # rpc: results travel back over the same TLS connection (no extra service to secure). redis: the result
        # store (result_store.py), which chords need; its settings are merged below.
        "result_backend": ("{{ cookiecutter.package_name }}.results.ReplyQueueOnceRPCBackend://"
                           if broker.result_backend == "rpc" else None),
        "task_ignore_result": broker.result_backend == "none",
        "result_expires": 3600,                               # results are temporary; nothing grows forever
        # --- delivery: nothing lost, nothing hoarded ---
        "task_acks_late": True,                               # example tasks are idempotent: redelivery is safe
        "task_reject_on_worker_lost": True,                   # a killed worker's task goes back to the queue
        "task_acks_on_failure_or_timeout": False,             # a failed task is dead-lettered, not acked away
        # Undecodable or malformed messages are dead-lettered and logged instead of acked or crashing the worker;
        # deliveries decrypted by TLS but not yet read are read at once instead of waiting for a heartbeat.
        "worker_consumer": "{{ cookiecutter.package_name }}.consumer:WorkerConsumer",
        "worker_prefetch_multiplier": 1,                      # one task at a time per process: fair dispatch
        # ETA tasks are held unacked in the worker; never more than this many, whatever producers send (their
        # ETA is also bounded at intake, header_policy.MAX_ETA_SECONDS).
        "worker_eta_task_limit": 100,
        "task_time_limit": 300,                               # a stuck task is killed...
        "task_soft_time_limit": 240,                          # ...after being asked to stop
        # A pool process that grows past this (KiB) is replaced after its task: leaks stay bounded. Not after a
        # count of tasks (worker_max_tasks_per_child): each replacement left the next task waiting in the pool for
        # up to 5 s, until the pool's periodic maintenance (benchmarks/stalls.py traced it; ANALYSIS.md).
        "worker_max_memory_per_child": 262_144,
        # --- routing: pre-declared queues, priorities ---
        "task_queues": task_queues(),
        "task_default_queue": topology.TASK_QUEUE,
        "task_default_exchange": topology.TASK_EXCHANGE,                # producers may write nowhere else
        "task_default_exchange_type": topology.TASK_EXCHANGE_TYPE,
        "task_default_routing_key": topology.TASK_QUEUE,
        "task_create_missing_queues": False,                  # a typo'd queue is an error, not a new queue
        "task_queue_max_priority": topology.MAX_PRIORITY,
        "task_default_priority": 0,
        "task_routes": (route_to_declared_queue,),
        # --- attack surface: no remote control, no gossip/mingle chatter (pidbox replies can be pickled) ---
        "worker_enable_remote_control": False,
        # Task events (JSON) only for the Flower dashboard; its monitor reads them, nobody can act on them.
        "worker_send_task_events": broker.send_events,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
        "timezone": "UTC",
    } | (broker.result_store.config() if broker.result_store is not None else {})
