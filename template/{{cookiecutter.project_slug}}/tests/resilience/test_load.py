"""Load: N tasks (default 10,000; LOAD_TASKS=...) through two workers over TLS: N results, none lost, none run twice.

Each worker has its own store (a host directory): a payment recorded by both workers would show up in both
stores, so "no duplicated side effect" is checked across workers, not hidden by the store's idempotency.
The wall time is recorded (junit property `evidence`, and printed), never asserted.
"""
import os
import time

import pytest
from celery.result import ResultSet

from tests.resilience.harness import PAYMENT_ROUTE, RECORD_PAYMENT, celery_client, queue_depth, rows, shared_data_dir

VHOST = "load"
TASKS = int(os.environ.get("LOAD_TASKS", "10000"))


@pytest.mark.live
def test_ten_thousand_tasks_through_two_workers_none_lost_none_duplicated(rig, workers, clean_vhost,
                                                                          record_property):
    clean_vhost(VHOST)
    stores = [shared_data_dir(rig), shared_data_dir(rig)]
    for store in stores:
        workers(VHOST, data_dir=store)
    client = celery_client(rig, VHOST)
    try:
        started = time.monotonic()
        results = [client.send_task(RECORD_PAYMENT, (f"load-{number}", 100, "EUR"), **PAYMENT_ROUTE) for number in range(TASKS)]
        published = time.monotonic() - started
        values = ResultSet(results).join_native(timeout=600, propagate=True)
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert len(values) == TASKS
    assert sorted(value["payment_id"] for value in values) == sorted(f"load-{n}" for n in range(TASKS))
    assert all(value["recorded"] for value in values)              # first time for every payment
    per_worker = [{row[0] for row in rows(store, "SELECT payment_id FROM payments")} for store in stores]
    assert not per_worker[0] & per_worker[1], "a task ran on both workers"
    assert len(per_worker[0]) + len(per_worker[1]) == TASKS
    assert queue_depth(rig.endpoint, VHOST, "priority") == 0
    figure = (f"{TASKS} tasks over TLS, 2 workers x 2 processes: published (with confirms) in {published:.1f}s, "
              f"all {TASKS} results in {elapsed:.1f}s ({TASKS / elapsed:.0f} tasks/s); split "
              f"{len(per_worker[0])}/{len(per_worker[1])}; 0 lost, 0 duplicated")
    print(figure)
    record_property("evidence", figure)
