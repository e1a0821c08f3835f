"""Idempotent update: running it twice (a redelivery after a crash) changes nothing the second time."""
from typing import Annotated

from celery import shared_task
from pydantic import Field

from .. import store
from ..examples import Example


@shared_task(example=Example({"account_id": 7}, returns={"account_id": 7, "changed": True}))
def activate_account(account_id: Annotated[int, Field(gt=0, lt=2**63)]) -> dict:
    return {"account_id": account_id, "changed": store.activate_account(account_id)}
