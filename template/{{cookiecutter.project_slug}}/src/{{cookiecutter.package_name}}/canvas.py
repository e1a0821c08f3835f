"""Workflows built from the example tasks: chunking with a group, a pipeline with a chain, and (with the result
store, result_backend = redis) a chord: a map/reduce whose reduce step runs on a worker."""
from celery import chain, chord, group

from .tasks.reports import add_totals, sum_chunk
from .tasks.text import count_words, normalize_text


def chunked_sum(numbers: list[int], chunk_size: int = 100) -> group:
    """Split a large list into bounded chunks summed in parallel; add the partial sums on the caller side.

    The caller combines the group's results itself, which works with every result backend; chunked_sum_chord
    leaves that to a worker, which needs the result store.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return group(sum_chunk.s(numbers[i:i + chunk_size]) for i in range(0, len(numbers), chunk_size))


def chunked_sum_chord(numbers: list[int], chunk_size: int = 100) -> chord:
    """chunked_sum's chunks, then add_totals on a worker once every chunk is summed: the caller waits for one
    result. Needs result_backend = redis (the store joins the chunks' results; rpc cannot). If a chunk fails, or
    add_totals does, the chord's result is that error: nothing is silently lost."""
    return chord(chunked_sum(numbers, chunk_size), add_totals.s())


def word_count_pipeline(text: str) -> chain:
    """normalize_text, then count_words on its result: each step runs only if the previous succeeded."""
    return chain(normalize_text.s(text), count_words.s())
