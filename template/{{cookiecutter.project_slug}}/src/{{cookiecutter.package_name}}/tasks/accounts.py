"""Idempotent update: running it twice (a redelivery after a crash) changes nothing the second time."""
from .. import store
from ..celery_app import app
from ..schemas import ActivateAccountArguments


@app.task(schema=ActivateAccountArguments)
def activate_account(account_id: int) -> dict:
    return {"account_id": account_id, "changed": store.activate_account(account_id)}
