"""Retry with exponential backoff, jitter and a hard limit, for transient failures only."""
import sqlite3
from typing import Annotated

from celery import shared_task
from pydantic import Field

from .. import store
from ..examples import Example
from ..schemas import EmailAddress, Identifier
from ..topology import MAX_MESSAGE_BYTES


@shared_task(
    autoretry_for=(sqlite3.OperationalError,),   # a locked/unavailable store is transient; bad input is not
    retry_backoff=2,                               # 2 s, 4 s, 8 s, ... between tries
    retry_backoff_max=120,
    retry_jitter=True,                             # spread retries so failures do not synchronise
    max_retries=5,                                 # then give up: the failure is final and visible
    example=Example({"notification_id": "n-1", "recipient": "ops@example.com", "subject": "hi", "body": "b"},
                    returns={"notification_id": "n-1", "queued": True}),
)
def deliver_notification(notification_id: Identifier,     # idempotency key
                         recipient: EmailAddress,
                         subject: Annotated[str, Field(min_length=1, max_length=200)],
                         body: Annotated[str, Field(max_length=MAX_MESSAGE_BYTES // 16)]) -> dict:
    queued = store.queue_notification(notification_id, recipient, subject, body)
    return {"notification_id": notification_id, "queued": queued}
