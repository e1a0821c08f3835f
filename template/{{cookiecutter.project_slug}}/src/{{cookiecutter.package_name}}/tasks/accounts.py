"""Idempotent updates: running one twice (a redelivery after a crash) changes nothing the second time."""
import hashlib
from typing import Annotated

from celery import shared_task
from pydantic import Field, SecretStr

from .. import store
from ..examples import Example


@shared_task(example=Example({"account_id": 7}, returns={"account_id": 7, "changed": True}))
def activate_account(account_id: Annotated[int, Field(gt=0, lt=2**63)]) -> dict:
    return {"account_id": account_id, "changed": store.activate_account(account_id)}


# A secret argument: typed SecretStr, it is masked in the message headers and the worker's logs (redaction.py) and
# reaches the body as a SecretStr, whose repr is masked too; only the token's digest is kept.
@shared_task(example=Example({"account_id": 7, "token": "example-token-not-a-secret"},  # nosec B105 - an example
                             returns={"account_id": 7, "changed": True}))
def set_api_token(account_id: Annotated[int, Field(gt=0, lt=2**63)],
                  token: Annotated[SecretStr, Field(min_length=16, max_length=256)]) -> dict:
    digest = hashlib.sha256(token.get_secret_value().encode()).hexdigest()
    return {"account_id": account_id, "changed": store.set_api_token(account_id, digest)}
