"""JSON only: pickle/yaml/msgpack messages are never decoded, are dead-lettered, and work goes on (SER-01..03)."""
import time

import pytest

from tools.broker_client import PICKLE_CANARY_PATH, PICKLE_PAYLOAD, death_reasons, drain_dead_letters, publish_raw

controls = pytest.mark.controls
# Each payload would create the canary file if a worker deserialized it.
HOSTILE = {
    "application/x-python-serialize": PICKLE_PAYLOAD,
    "application/x-yaml": f'!!python/object/apply:os.system ["touch {PICKLE_CANARY_PATH}"]'.encode(),
    "application/x-msgpack": b"\x93\x90\x80\x80",
}
REFUSAL = "Refusing to deserialize untrusted content"


def wait_for_dead_letters(stack, vhost: str, expected: int, timeout: float = 30.0) -> list:
    letters, deadline = [], time.monotonic() + timeout
    with stack.connect(vhost, "auditor") as connection:
        while len(letters) < expected and time.monotonic() < deadline:
            letters += drain_dead_letters(connection)
            time.sleep(0.2)
    return letters


@controls("SER-01", "SER-02")
def test_non_json_messages_are_refused_dead_lettered_and_never_run(stack, vhosts, celery_client, record_property):
    published = 0
    for vhost in vhosts:
        with stack.connect(vhost, "auditor") as auditor:
            drain_dead_letters(auditor)                                  # start from empty evidence queues
        with stack.connect(vhost, "producer") as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            for queue in ("tasks", "priority"):
                for content_type, body in HOSTILE.items():
                    publish_raw(channel, queue, body, content_type, "{{ cookiecutter.package_name }}.tasks.arithmetic.add")
                    published += 1
    per_vhost = published // len(vhosts)
    evidence = []
    for vhost in vhosts:
        letters = wait_for_dead_letters(stack, vhost, per_vhost)
        reasons = sorted({reason for properties, _ in letters for reason in death_reasons(properties)})
        types = sorted({properties.content_type for properties, _ in letters})
        evidence.append(f"{vhost}: {len(letters)}/{per_vhost} dead-lettered, reasons {reasons}")
        assert len(letters) == per_vhost, evidence[-1]
        assert reasons == ["rejected"] and types == sorted(HOSTILE)
        worker = stack.workers[vhost]
        assert worker.exec_run(["test", "-e", PICKLE_CANARY_PATH]).exit_code != 0, "a payload was deserialized"
        logs = worker.logs().decode(errors="replace")
        assert logs.count(REFUSAL) >= per_vhost
        worker.reload()
        assert worker.status == "running"
    record_property("evidence", "; ".join(evidence))
    # ...and the worker still executes legitimate work afterwards.
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    assert add.delay(20, 22).get(timeout=30) == 42


@controls("SER-01")
def test_legitimate_json_task_round_trip(celery_client, record_property):
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    result = add.delay(2, 3)
    assert result.get(timeout=30) == 5
    record_property("evidence", f"add(2, 3) -> 5 over TLS as task {result.id}")


@controls("SER-03")
@pytest.mark.parametrize("serializer", ["pickle", "yaml", "msgpack"])
def test_producer_refuses_to_send_non_json(celery_client, serializer):
    from {{ cookiecutter.package_name }}.errors import ImproperlyConfigured
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    with pytest.raises(ImproperlyConfigured, match=f"refusing to use serializer '{serializer}'"):
        add.apply_async((1, 2), serializer=serializer)
