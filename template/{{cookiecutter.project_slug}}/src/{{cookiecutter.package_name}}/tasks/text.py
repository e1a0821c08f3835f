"""Two steps meant to be chained: the output of the first is the input of the second."""
from celery import shared_task

from ..examples import Example
from ..schemas import Text


@shared_task(example=Example({"text": "  Hello   World "}, returns="hello world"))
def normalize_text(text: Text) -> str:
    return " ".join(text.lower().split())


@shared_task(example=Example({"text": "a b c"}, returns=3))
def count_words(text: Text) -> int:
    return len(text.split())
