"""Input schemas of the example tasks: strict types, bounded sizes, no unknown fields."""
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .topology import MAX_MESSAGE_BYTES


class TaskArguments(BaseModel):
    # strict: "1" is not an int and 1 is not a bool; forbid: an unexpected field is an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Amount = Annotated[int, Field(ge=-1_000_000_000_000, le=1_000_000_000_000)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class AddArguments(TaskArguments):
    x: Amount
    y: Amount


class ActivateAccountArguments(TaskArguments):
    account_id: Annotated[int, Field(gt=0, lt=2**63)]


class RecordPaymentArguments(TaskArguments):
    payment_id: Identifier          # the idempotency key: the same payment twice is recorded once
    amount_cents: Annotated[int, Field(gt=0, le=100_000_000_00)]
    currency: Literal["EUR", "USD", "GBP", "CHF", "JPY"]


class SumChunkArguments(TaskArguments):
    numbers: Annotated[list[Amount], Field(max_length=1000)]


class NormalizeTextArguments(TaskArguments):
    text: Annotated[str, Field(max_length=10_000)]


class CountWordsArguments(TaskArguments):
    text: Annotated[str, Field(max_length=10_000)]


class DeliverNotificationArguments(TaskArguments):
    notification_id: Identifier     # idempotency key
    recipient: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")]
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(max_length=MAX_MESSAGE_BYTES // 16)]
