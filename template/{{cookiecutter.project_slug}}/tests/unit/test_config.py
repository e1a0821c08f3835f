"""Celery settings: JSON only everywhere (SER-01, SER-03) and the production practices."""
import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads

from {{ cookiecutter.package_name }} import errors
from tests.unit.unit_app import app
from {{ cookiecutter.package_name }}.tasks.arithmetic import add

pytestmark = pytest.mark.controls("SER-01", "SER-03")


def test_json_only_for_tasks_results_and_events():
    conf = app.conf
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]
    assert (conf.task_serializer, conf.result_serializer, conf.event_serializer) == ("json", "json", "json")


def test_pickle_is_refused_before_decoding():
    with pytest.raises(ContentDisallowed):
        loads(b"cposix\nsystem\n(S'true'\ntR.", "application/x-python-serialize", "binary",
              accept=app.conf.accept_content)


@pytest.mark.parametrize("serializer", ["pickle", "yaml", "msgpack"])
def test_producer_refuses_non_json_serializer(serializer):
    with pytest.raises(errors.ImproperlyConfigured, match=f"refusing to use serializer '{serializer}'"):
        add.apply_async((1, 2), serializer=serializer)


def test_production_practices():
    conf = app.conf
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.result_expires == 3600
    assert conf.task_time_limit > conf.task_soft_time_limit > 0
    assert conf.worker_enable_remote_control is False
    assert conf.broker_transport_options["confirm_publish"] is True
    assert all(queue.no_declare for queue in conf.task_queues)


def test_pool_processes_are_recycled_by_memory_not_by_task_count():
    """Leaks stay bounded (a process past 256 MiB is replaced), and no task waits for a replacement every N tasks:
    with worker_max_tasks_per_child = 1000 each replacement stalled the next call 0.7-5 s (issue 13;
    `python -m benchmarks.stalls` in the template repository fails while they happen)."""
    assert app.conf.worker_max_memory_per_child == 262_144
    assert app.conf.worker_max_tasks_per_child is None


def test_payments_are_routed_to_the_priority_queue_with_a_high_priority():
    payment = app.tasks["{{ cookiecutter.package_name }}.tasks.payments.record_payment"]
    route = app.amqp.router.route({}, payment.name, task_type=payment)
    assert route["queue"].name == "priority" and route["priority"] == 9
    assert app.amqp.router.route({}, add.name, task_type=add)["queue"].name == "tasks"


{% if cookiecutter.result_backend == "rpc" -%}
def test_reply_queue_is_declared_once_per_channel_not_per_task(monkeypatch):
    from {{ cookiecutter.package_name }} import results
    declared = []
    monkeypatch.setattr(results, "maybe_declare", lambda entity, retry: declared.append(entity.name))
    backend = app.backend
    assert isinstance(backend, results.ReplyQueueOnceRPCBackend)

    class Channel:
        pass

    class Producer:
        channel = Channel()

    for _ in range(5):
        backend.on_task_call(Producer(), "task-id")
    assert len(declared) == 1                        # one declare for five sends on the channel
    other = Producer()
    other.channel = Channel()
    backend.on_task_call(other, "task-id")
    assert len(declared) == 2                        # a new channel (e.g. after reconnecting) declares again
{%- elif cookiecutter.result_backend == "redis" -%}
def test_results_go_to_the_result_store_as_json_and_expire():
    from {{ cookiecutter.package_name }}.result_store import BoundedRedisBackend
    assert isinstance(app.backend, BoundedRedisBackend) and app.conf.task_ignore_result is False
    assert app.conf.result_serializer == "json" and app.conf.result_accept_content == ["json"]
    assert app.conf.result_expires == 3600
{%- else -%}
def test_results_are_disabled():
    assert app.conf.result_backend is None and app.conf.task_ignore_result is True
{%- endif %}
