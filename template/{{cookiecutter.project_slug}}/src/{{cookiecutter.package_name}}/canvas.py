"""Workflows built from the example tasks: chunking with a group, a pipeline with a chain."""
from celery import chain, group

from .tasks.reports import sum_chunk
from .tasks.text import count_words, normalize_text


def chunked_sum(numbers: list[int], chunk_size: int = 100) -> group:
    """Split a large list into bounded chunks summed in parallel; add the partial sums on the caller side.

    A chord (group + callback) needs a result backend that supports it (e.g. Redis); the rpc backend
    this project ships does not, so the caller combines the group's results itself.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return group(sum_chunk.s(numbers[i:i + chunk_size]) for i in range(0, len(numbers), chunk_size))


def word_count_pipeline(text: str) -> chain:
    """normalize_text, then count_words on its result: each step runs only if the previous succeeded."""
    return chain(normalize_text.s(text), count_words.s())
