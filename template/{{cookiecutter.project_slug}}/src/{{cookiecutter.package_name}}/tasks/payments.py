"""High-priority work on the priority queue (alone there: nothing else may jump the line), idempotent by
payment_id."""
from typing import Annotated, Literal

from celery import shared_task
from pydantic import Field

from .. import store
from ..examples import Example
from ..schemas import Identifier
from ..topology import PRIORITY_QUEUE


@shared_task(on_queue=PRIORITY_QUEUE,
          example=Example({"payment_id": "p-1", "amount_cents": 100, "currency": "EUR"},
                          returns={"payment_id": "p-1", "recorded": True}))
def record_payment(payment_id: Identifier,      # idempotency key: the same payment twice is recorded once
                   amount_cents: Annotated[int, Field(gt=0, le=100_000_000_00)],
                   currency: Literal["EUR", "USD", "GBP", "CHF", "JPY"]) -> dict:
    return {"payment_id": payment_id, "recorded": store.record_payment(payment_id, amount_cents, currency)}
