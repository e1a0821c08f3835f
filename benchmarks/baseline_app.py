"""The unhardened comparison app: same task bodies as the baked project, none of its security controls.

Mounted read-only into the project's worker image (as /opt/bench/baseline_app.py) and imported by the
benchmark client on the host. It never changes the shipped code: it only *reads* the project's own config,
store and logging modules so the work done per task is the same.

BENCH_PROFILE selects the Celery settings:
  identical  the project's build_config() (prefetch 1, late acks, publisher confirms, its queues, its
             structured logging, ...) with exactly the security controls swapped out: plaintext AMQP,
             pickle, Celery's stock consumer (no dead-lettering intake) and no argument validation.
  default    a stock Celery app as tutorials set it up: plaintext, pickle, prefetch multiplier 4, early
             acks, the auto-declared `celery` queue; only the rpc result backend is set (to read results).
"""
import os

from celery import Celery

PICKLE = ["pickle", "json"]


class PlainBroker:
    """Duck-types the project's BrokerSettings for build_config(): a plaintext URL, no TLS options."""

    result_backend = "rpc"
    login_method = "AMQPLAIN"        # the baselines log in with a password, over plaintext AMQP
    send_events = False              # as shipped without the dashboard

    def __init__(self, url: str):
        self.url = url

    def connection_url(self) -> str:
        return self.url

    def ssl_options(self) -> None:
        return None

    def authentication(self) -> tuple:
        return ()                    # py-amqp's default: the URL's user and password


def identical_config(url: str) -> dict:
    from hardened_tasks import logging_setup  # noqa: F401  (same structured logging as the shipped worker)
    from hardened_tasks.config import build_config
    config = build_config(PlainBroker(url))
    config.update(broker_use_ssl=False, accept_content=PICKLE, result_accept_content=PICKLE,
                  task_serializer="pickle", result_serializer="pickle", event_serializer="pickle",
                  worker_consumer="celery.worker.consumer:Consumer")
    return config


def default_config(url: str) -> dict:
    return {"broker_url": url, "result_backend": "rpc://", "accept_content": PICKLE,
            "result_accept_content": PICKLE, "task_serializer": "pickle", "result_serializer": "pickle"}


PROFILE = os.environ.get("BENCH_PROFILE", "identical")
URL = os.environ["BENCH_BROKER_URL"]
app = Celery("baseline", set_as_current=False)
app.config_from_object(identical_config(URL) if PROFILE == "identical" else default_config(URL))


# The same bodies as the project's tasks (src/<package>/tasks/), under fixed names so the host client
# (which imports this file as benchmarks.baseline_app) and the worker agree.
@app.task(name="bench.add")
def add(x, y):
    return x + y


@app.task(name="bench.normalize_text")
def normalize_text(text):
    return " ".join(text.lower().split())


@app.task(name="bench.sum_chunk")
def sum_chunk(numbers):
    return sum(numbers)


@app.task(name="bench.deliver_notification")
def deliver_notification(notification_id, recipient, subject, body):
    from hardened_tasks import store
    return {"notification_id": notification_id,
            "queued": store.queue_notification(notification_id, recipient, subject, body)}
