"""Chunking: a large job is split into bounded pieces (see canvas.chunked_sum) so no task hogs a worker."""
from typing import Annotated

from celery import shared_task
from pydantic import Field

from ..examples import Example
from ..schemas import Amount


@shared_task(example=Example({"numbers": [1, 2, 3]}, returns=6))
def sum_chunk(numbers: Annotated[list[Amount], Field(max_length=1000)]) -> int:
    return sum(numbers)


@shared_task(example=Example({"totals": [6, 15]}, returns=21))
def add_totals(totals: Annotated[list[Amount], Field(max_length=1000)]) -> int:
    """A chord's body: the partial sums of canvas.chunked_sum_chord, added up (a total beyond Amount's bounds
    is refused by its schema, and the chord reports that error)."""
    return sum(totals)
