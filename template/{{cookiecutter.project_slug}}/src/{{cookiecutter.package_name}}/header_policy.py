"""What a task message's headers may say: checked at intake, before Celery believes them (VAL-04).

Any holder of publish rights writes any header, and Celery trusts them: an ETA a year ahead keeps the message
unacked in the worker (memory) or loops it through the broker's consumer timeout; a `timelimit` of [1e9, 1e9]
lifts the kill switch of stuck tasks; `reply_to` can aim a result at any queue of the vhost, the dead-letter
evidence included; a chain or callback makes the worker itself publish any task anywhere; `shadow` renames the
task in every log; a `celery.*` name reaches built-in tasks that have no schema. A message that breaks any rule
below is dead-lettered with the rule it broke (intake.py), never run.
"""
import datetime as dt
import re

from . import topology

# The furthest ahead an ETA/countdown may be. A worker holds an ETA task unacked until it runs, so this stays well
# inside the broker's consumer_timeout (30 min, rabbitmq.conf): past that the broker would close the channel and
# redeliver the task, again and again.
MAX_ETA_SECONDS = 1200
BUILT_IN_PREFIX = "celery."
# Task and group ids: UUIDs by default, or a caller's own key; never anything that could break a log line.
TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
REPLY_QUEUE = re.compile(topology.REPLY_QUEUE_PATTERN)
# What the project's own canvas puts in an embedded signature's options (chain steps): nothing that routes,
# delays or renames.
SIGNATURE_OPTIONS = {"task_id", "reply_to", "priority"}
MAX_GROUP_SIZE = 10_000
# A chord's body (result_backend = redis) also names the group whose results it joins.
CHORD_BODY_OPTIONS = SIGNATURE_OPTIONS | {"group_id"}


def _is_id(value) -> bool:
    return value is None or (isinstance(value, str) and TASK_ID.match(value) is not None)


def _eta_problem(eta, now: dt.datetime) -> str | None:
    if eta is None:
        return None
    try:
        when = dt.datetime.fromisoformat(eta)
    except (TypeError, ValueError):
        return "eta is not an ISO 8601 time"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    if (when - now).total_seconds() > MAX_ETA_SECONDS:
        return f"eta is more than {MAX_ETA_SECONDS} s ahead"
    return None


def _time_limit_problem(timelimit, task) -> str | None:
    """`timelimit` is [hard, soft]; each may be None (the task's own applies) but never above the task's own."""
    if timelimit is None:
        return None
    hard, soft = timelimit
    allowed = ((hard, task.time_limit or task.app.conf.task_time_limit, "hard"),
               (soft, task.soft_time_limit or task.app.conf.task_soft_time_limit, "soft"))
    for value, ceiling, name in allowed:
        if value is not None and (value <= 0 or (ceiling is not None and value > ceiling)):
            return f"the {name} time limit {value} is not within (0, {ceiling}]"
    return None


def _signature_problem(signature, tasks, allowed_options=frozenset(SIGNATURE_OPTIONS)) -> str | None:
    if not isinstance(signature, dict):
        return "an embedded signature is not an object"
    name = signature.get("task")
    if not isinstance(name, str) or name.startswith(BUILT_IN_PREFIX) or name not in tasks:
        return f"an embedded signature names task {str(name)[:80]!r}, which this worker does not run"
    if signature.get("subtask_type") is not None:
        return "an embedded signature is a nested canvas"
    options = signature.get("options") or {}
    if not isinstance(options, dict) or set(options) - allowed_options:
        return f"an embedded signature sets options {sorted(set(options) - allowed_options)[:5]}"
    if options.get("reply_to") is not None and not REPLY_QUEUE.match(str(options["reply_to"])):
        return "an embedded signature replies to a queue that is not a reply queue"
    if not _is_id(options.get("group_id")):
        return "an embedded signature's group_id is not a task id"
    return None


def violation(headers: dict, properties: dict, embed: dict | None, tasks,
              now: dt.datetime | None = None, chords: bool = False) -> str | None:
    """The first rule a protocol-2 task message breaks, or None. `tasks` is the app's task registry; `chords`:
    whether the result backend joins chords (the result store does, rpc does not)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    name = headers.get("task")
    if isinstance(name, str) and name.startswith(BUILT_IN_PREFIX):
        return f"task {name[:80]!r} is a Celery built-in, which producers may not invoke"
    task = tasks.get(name) if isinstance(name, str) else None
    if headers.get("shadow") is not None:
        return "shadow renames the task in logs"
    if headers.get("lang", "py") != "py":
        return "lang is not py"
    problem = _eta_problem(headers.get("eta"), now)
    if problem:
        return problem
    if task is not None:
        problem = _time_limit_problem(headers.get("timelimit"), task)
        if problem:
            return problem
        retries = headers.get("retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= (task.max_retries or 0):
            return f"retries {str(retries)[:20]} is not within [0, {task.max_retries or 0}]"
    for header in ("id", "root_id", "parent_id", "group"):
        if not _is_id(headers.get(header)):
            return f"{header} is not a task id"
    group_index = headers.get("group_index")      # a chord orders its header's results by it
    if group_index is not None and (not isinstance(group_index, int) or isinstance(group_index, bool)
                                    or not 0 <= group_index < MAX_GROUP_SIZE):
        return f"group_index {str(group_index)[:20]} is not within [0, {MAX_GROUP_SIZE})"
    if headers.get("stamped_headers") or headers.get("stamps") or headers.get("replaced_task_nesting", 0):
        return "stamping and replaced-task headers are not used by this project"
    reply_to = properties.get("reply_to")
    if reply_to is not None and not REPLY_QUEUE.match(str(reply_to)):
        return f"reply_to {str(reply_to)[:80]!r} is not a reply queue"
    embed = embed or {}
    if embed.get("chord") is not None:
        if not chords:
            return "chords are not supported by this project's result backend"
        problem = _signature_problem(embed["chord"], tasks, CHORD_BODY_OPTIONS)
        if problem:
            return f"chord: {problem}"
    for key in ("callbacks", "errbacks", "chain"):
        signatures = embed.get(key)
        if signatures is None:
            continue
        if not isinstance(signatures, list):
            return f"{key} is not a list"
        for signature in signatures:
            problem = _signature_problem(signature, tasks)
            if problem:
                return f"{key}: {problem}"
    return None
