"""Demo client: one valid task and its result, then an invalid call refused on each side of the queue."""
import sys

from .celery_app import app
from .errors import InvalidTaskArguments
from .tasks.arithmetic import add

RESULT_TIMEOUT_SECONDS = 60


def main() -> int:
    if app.conf.task_ignore_result:
        add.delay(2, 3)
        print("sent add(2, 3); results are disabled (result_backend = none), see the worker log")
        return 0
    print(f"add(2, 3) = {add.delay(2, 3).get(timeout=RESULT_TIMEOUT_SECONDS)}")
    if getattr(app.backend, "supports_chords", False):        # result_backend = redis: a chord, joined on a worker
        from .canvas import chunked_sum_chord
        total = chunked_sum_chord(list(range(1, 1001)), 100).apply_async().get(timeout=RESULT_TIMEOUT_SECONDS)
        print(f"chord: 1 + 2 + ... + 1000 in 10 chunks, added up by a worker = {total}")
    try:
        add.delay("two", 3)
    except InvalidTaskArguments as exc:
        print(f"refused by the producer: {exc}")
    # send_task skips the producer-side check, as a hostile client would; the worker refuses it too.
    forged = app.send_task(add.name, args=["two", 3])
    try:
        forged.get(timeout=RESULT_TIMEOUT_SECONDS)
    except InvalidTaskArguments as exc:
        print(f"refused by the worker:   {exc}")
        return 0
    print("ERROR: the worker accepted invalid arguments", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
