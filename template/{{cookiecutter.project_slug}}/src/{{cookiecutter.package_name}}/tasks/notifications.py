"""Retry with exponential backoff, jitter and a hard limit, for transient failures only."""
import sqlite3

from .. import store
from ..celery_app import app
from ..schemas import DeliverNotificationArguments


@app.task(
    schema=DeliverNotificationArguments,
    autoretry_for=(sqlite3.OperationalError,),   # a locked/unavailable store is transient; bad input is not
    retry_backoff=2,                               # 2 s, 4 s, 8 s, ... between tries
    retry_backoff_max=120,
    retry_jitter=True,                             # spread retries so failures do not synchronise
    max_retries=5,                                 # then give up: the failure is final and visible
)
def deliver_notification(notification_id: str, recipient: str, subject: str, body: str) -> dict:
    queued = store.queue_notification(notification_id, recipient, subject, body)
    return {"notification_id": notification_id, "queued": queued}
