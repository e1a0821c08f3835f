"""The smallest task: proves the pipeline end to end."""
from ..celery_app import app
from ..examples import Example
from ..schemas import Amount


@app.task(example=Example({"x": 2, "y": 3}, returns=5))
def add(x: Amount, y: Amount) -> int:
    return x + y
