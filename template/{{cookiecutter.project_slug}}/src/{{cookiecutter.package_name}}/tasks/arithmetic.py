"""The smallest task: proves the pipeline end to end."""
from ..celery_app import app
from ..schemas import AddArguments


@app.task(schema=AddArguments)
def add(x: int, y: int) -> int:
    return x + y
