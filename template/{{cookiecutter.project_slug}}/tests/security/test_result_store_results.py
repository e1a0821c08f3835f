"""Results in the store (result_backend = redis) are JSON only, expire, are bounded in size, and survive a restart
of the store (RES-03)."""
import json
import os
import time
from pathlib import Path

import pytest

from tests.harness.readiness import RESULTS_READY, wait_until
from tests.harness.scratch import ScratchFiles
from tests.security.result_store_clients import ADD, announced_set_reply, no_store, store, task_key, user

controls = pytest.mark.controls


@controls("RES-03")
def test_results_are_stored_as_json_and_expire(stack, vhosts, celery_client, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    result = celery_client.send_task(ADD, args=[2, 3])
    assert result.get(timeout=30) == 5
    reader = store(stack, user(stack, vhosts[0], "producer"))
    raw = reader.get(task_key(vhosts[0], result.id))
    document = json.loads(raw)
    assert document["status"] == "SUCCESS" and document["result"] == 5
    ttl = reader.pttl(task_key(vhosts[0], result.id)) / 1000
    assert 0 < ttl <= celery_client.conf.result_expires, f"the result expires in {ttl} s"
    record_property("evidence", f"stored as JSON ({raw[:60]!r}...), expiring in {ttl:.0f} s "
                                f"(result_expires {celery_client.conf.result_expires} s)")


@controls("RES-03")
def test_a_result_in_another_format_is_never_decoded_as_such(stack, vhosts, celery_client, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    import pickle  # nosec B403 - the attack's payload is built here; the point is that nothing unpickles it
    from celery.result import AsyncResult
    from kombu.exceptions import DecodeError
    scratch = ScratchFiles("pickled-result-")
    canary = scratch.path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (canary,))

    # A tenant's worker is compromised and plants a pickled "result" (which would run code when unpickled).
    planted = AsyncResult("planted-" + os.urandom(8).hex(), app=celery_client)
    body = pickle.dumps({"status": "SUCCESS", "result": Payload(), "task_id": planted.id})
    try:
        store(stack, user(stack, vhosts[0], "worker")).set(task_key(vhosts[0], planted.id), body, ex=300)
        with pytest.raises(DecodeError) as refused:
            planted.get(timeout=10)
        assert not canary.exists(), "the client unpickled a result"
    finally:
        # The client stops waiting for it: Celery would decode it again at every reconnection and fail there.
        celery_client.backend.result_consumer.cancel_for(planted.id)
        scratch.remove()
    result = celery_client.send_task(ADD, args=[1, 1])
    assert result.get(timeout=30) == 2                     # the legitimate path: a JSON result is read
    record_property("evidence", f"a pickled result planted in the store: {type(refused.value).__name__} "
                                f"({str(refused.value)[:100]}), never unpickled; a JSON result is read")


@controls("RES-03")
def test_a_result_too_large_is_refused_and_not_stored(stack, vhosts, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    from celery import states
    from celery.exceptions import BackendStoreError
    from celery import Celery
    from {{ cookiecutter.package_name }}.result_store import MAX_RESULT_BYTES
    vhost, identity = vhosts[0], user(stack, vhosts[0], "worker")
    # The workers' own backend (result_store.py's settings) in this process, logged in as the tenant's worker.
    app = Celery("oversized", set_as_current=False)
    app.conf.update(stack.result_store_settings(vhost, "worker").config(), result_serializer="json",
                    result_accept_content=["json"])
    backend, task_id = app.backend, "oversized-" + os.urandom(8).hex()
    with pytest.raises(BackendStoreError) as refused:
        backend.store_result(task_id, "x" * (MAX_RESULT_BYTES + 1), states.SUCCESS)
    assert "value too large" in str(refused.value)
    reader = store(stack, identity)
    assert reader.get(task_key(vhost, task_id)) is None
    # The store's own limit, for a client that skips that check: no value over 1 MiB is accepted at all. The store
    # answers as soon as it reads the value's announced length (and hangs up), so only that much is sent.
    assert "invalid bulk length" in announced_set_reply(reader, task_key(vhost, task_id), 1024 * 1024 + 1)
    assert reader.get(task_key(vhost, task_id)) is None
    # The legitimate twin: a large result within the bound is stored.
    backend.store_result(task_id, "x" * (MAX_RESULT_BYTES // 2), states.SUCCESS)
    assert len(reader.get(task_key(vhost, task_id))) > MAX_RESULT_BYTES // 2
    record_property("evidence", f"a {MAX_RESULT_BYTES + 1}-character result: {refused.value}, nothing stored; a "
                                "1 MiB value sent straight to the store: 'Protocol error: invalid bulk length'; a "
                                f"{MAX_RESULT_BYTES // 2}-character result stored")


@controls("RES-03")
def test_results_survive_a_restart_of_the_store(stack, vhosts, celery_client, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    result = celery_client.send_task(ADD, args=[40, 2])
    assert result.get(timeout=30) == 42
    started = time.monotonic()
    since = int(time.time())
    stack.results.restart(timeout=10)
    wait_until(lambda: RESULTS_READY in stack.results.logs(since=since).decode(errors="replace"), timeout=60,
               what="the result store's restart")
    restarted = time.monotonic() - started
    reader = store(stack, user(stack, vhosts[0], "producer"))
    assert json.loads(reader.get(task_key(vhosts[0], result.id)))["result"] == 42
    after = celery_client.send_task(ADD, args=[1, 2])
    assert after.get(timeout=30) == 3                      # and the workers store results again
    record_property("evidence", f"a result stored before a restart of the store ({restarted:.1f} s) is read after it "
                                "(append-only file on the results-data volume); new results are stored")
