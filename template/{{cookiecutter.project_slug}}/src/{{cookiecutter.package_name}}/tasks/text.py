"""Two steps meant to be chained: the output of the first is the input of the second."""
from ..celery_app import app
from ..schemas import CountWordsArguments, NormalizeTextArguments


@app.task(schema=NormalizeTextArguments)
def normalize_text(text: str) -> str:
    return " ".join(text.lower().split())


@app.task(schema=CountWordsArguments)
def count_words(text: str) -> int:
    return len(text.split())
