"""Chunking: a large job is split into bounded pieces (see canvas.chunked_sum) so no task hogs a worker."""
from ..celery_app import app
from ..schemas import SumChunkArguments


@app.task(schema=SumChunkArguments)
def sum_chunk(numbers: list[int]) -> int:
    return sum(numbers)
