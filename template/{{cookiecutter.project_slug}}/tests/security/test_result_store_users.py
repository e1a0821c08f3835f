"""The result store's users (result_backend = redis): nobody without a password, each tenant's users confined to the
tenant's keys and to the commands Celery needs, and the whole canvas, chords included, working as those users
(RES-02)."""
import pytest

from tests.security.result_store_clients import (ADD, NO_PERMISSION, no_store, refusal, store, subscribed, task_key,
                                                 user)

controls = pytest.mark.controls
# Refused outright by a server built as ours is (enable-debug-command / enable-module-command no), before any ACL.
PROTECTED = "not allowed"
# Commands Celery never sends, in forms that would do no harm even if allowed (an unknown option is a syntax error
# only once the ACL let the command through), so that a weakened store is not wrecked by its own test.
FORBIDDEN = [("CONFIG", "GET", "maxmemory"), ("CONFIG", "SET", "maxclients", "512"), ("FLUSHALL", "NOTANOPTION"),
             ("FLUSHDB", "NOTANOPTION"), ("KEYS", "*"), ("SCAN", "0"), ("INFO",), ("CLIENT", "LIST"),
             ("ACL", "LIST"), ("ACL", "SETUSER", "intruder"), ("EVAL", "return 1", "0"),
             ("SCRIPT", "FLUSH", "NOTANOPTION"), ("SHUTDOWN", "NOTANOPTION"), ("MODULE", "LIST"),
             ("DEBUG", "NOTASUBCOMMAND"), ("REPLICAOF", "NOTAHOST", "NOTAPORT"), ("OBJECT", "FREQ", "x")]


@controls("RES-02")
def test_nobody_logs_in_without_the_users_password(stack, vhosts, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    import redis
    identity = user(stack, vhosts[0], "worker")
    with pytest.raises(redis.AuthenticationError) as anonymous:
        store(stack, None, certificate=identity).ping()             # a certificate, no login: the default user
    refusals = {}
    for who, password in (("default", ""), ("default", "default"), (identity, "not-its-password")):
        with pytest.raises(redis.AuthenticationError) as refused:
            store(stack, who, password=password, certificate=identity).ping()
        refusals[who] = str(refused.value)
    assert all("invalid username-password pair or user is disabled" in text for text in refusals.values()), refusals
    assert store(stack, identity).ping() is True
    record_property("evidence", f"no login: {str(anonymous.value)[:80]}; default user and a wrong password: "
                                f"{refusals[identity]}; the user's own password: PONG")


@controls("RES-02")
def test_a_tenant_cannot_read_write_or_delete_another_tenants_results(stack, vhosts, celery_client, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    if len(vhosts) < 2:
        pytest.fail("this test needs two tenants ([workers] vhosts in stack.toml)")
    owner, other = vhosts[0], vhosts[1]
    result = celery_client.send_task(ADD, args=[20, 22])
    assert result.get(timeout=30) == 42                     # a real result of the owner's, stored by its worker
    key = task_key(owner, result.id)
    stored = store(stack, user(stack, owner, "producer")).get(key)
    assert stored is not None
    attempts = {}
    for role in stack.stack.topology.RESULT_STORE_ROLES:
        intruder = store(stack, user(stack, other, role))
        operations = {"read": lambda c=intruder: c.get(key), "overwrite": lambda c=intruder: c.set(key, "{}"),
                      "delete": lambda c=intruder: c.delete(key), "list": lambda c=intruder: c.mget([key]),
                      "listen": subscribed(store(stack, user(stack, other, role)), key)}
        for what, call in operations.items():
            attempts[f"{other}-{role} {what}"] = refusal(call)
    # A producer reads its own tenant's results, but cannot forge one (only workers store results).
    producer = store(stack, user(stack, owner, "producer"))
    attempts[f"{owner}-producer forge"] = refusal(lambda: producer.set(key, '{"status": "SUCCESS", "result": 0}'))
    carried_out = [attempt for attempt, reply in attempts.items() if NO_PERMISSION not in reply.lower()]
    assert carried_out == [], f"carried out against {key}: {carried_out} ({attempts})"
    assert store(stack, user(stack, owner, "producer")).get(key) == stored      # untouched
    # The owner's own users may do what Celery needs: the worker stores and deletes, the producer listens.
    worker = store(stack, user(stack, owner, "worker"))
    assert worker.set(task_key(owner, "probe"), "{}") and worker.delete(task_key(owner, "probe")) == 1
    assert subscribed(store(stack, user(stack, owner, "producer")), key)()["type"] == "subscribe"
    record_property("evidence", f"{len(attempts)} attempts on {owner}'s result refused, e.g. "
                                f"{attempts[f'{other}-worker read']!r}; its own users store, delete and listen")


@controls("RES-02")
def test_commands_celery_does_not_need_are_refused(stack, vhosts, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    replies = {}
    for role in stack.stack.topology.RESULT_STORE_ROLES:
        client = store(stack, user(stack, vhosts[0], role))
        for command in FORBIDDEN:
            replies[f"{role}: {' '.join(command)}"] = refusal(lambda c=client, args=command: c.execute_command(*args))
    allowed = {command: reply for command, reply in replies.items()
               if NO_PERMISSION not in reply.lower() and PROTECTED not in reply}
    assert allowed == {}, f"carried out (or failed only for another reason): {allowed}"
    assert store(stack, user(stack, vhosts[0], "worker")).ping() is True
    record_property("evidence", f"{len(replies)} commands refused, e.g. {replies['worker: CONFIG GET maxmemory']!r}, "
                                f"{replies['producer: KEYS *']!r}")


@controls("RES-02")
def test_a_chord_runs_end_to_end_as_the_least_privileged_users(stack, celery_client, record_property):
    if not stack.stack.result_store:
        return no_store(stack, record_property)
    from celery.exceptions import ChordError
    from {{ cookiecutter.package_name }}.canvas import chunked_sum_chord
    numbers = list(range(1, 1001))
    assert chunked_sum_chord(numbers, 100).apply_async().get(timeout=60) == sum(numbers)
    # A chord whose reduce step fails (the partial sums exceed what add_totals accepts) reports that error.
    failing = chunked_sum_chord([10 ** 12] * 200, 100).apply_async()
    with pytest.raises(ChordError) as failed:
        failing.get(timeout=60)
    assert "add_totals" in str(failed.value) and "less than or equal to" in str(failed.value), failed.value
    record_property("evidence", f"chunked_sum_chord of 1..1000 over 10 chunks = {sum(numbers)}, joined by a worker; "
                                f"a failing reduce step: {str(failed.value)[:160]}")
