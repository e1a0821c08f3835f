"""The smallest task: proves the pipeline end to end."""
from celery import shared_task

from ..examples import Example
from ..schemas import Amount


@shared_task(example=Example({"x": 2, "y": 3}, returns=5))
def add(x: Amount, y: Amount) -> int:
    return x + y
