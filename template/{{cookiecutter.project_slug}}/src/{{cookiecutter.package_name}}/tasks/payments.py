"""High-priority work: routed to the priority queue with priority 9 (config.task_routes), idempotent by payment_id."""
from .. import store
from ..celery_app import app
from ..schemas import RecordPaymentArguments


@app.task(schema=RecordPaymentArguments)
def record_payment(payment_id: str, amount_cents: int, currency: str) -> dict:
    return {"payment_id": payment_id, "recorded": store.record_payment(payment_id, amount_cents, currency)}
