"""A task's worked example, declared beside it (`@shared_task(example=Example(...))`) and run by the live tests."""
from typing import Any, NamedTuple


class Example(NamedTuple):
    kwargs: dict[str, Any]      # valid arguments
    returns: Any                # what the task gives for them (JSON: tuples come back as lists)
