"""Passwords rotate without downtime (CRED-08).

Password login: each identity has two broker users and alternates between them. `python -m tools.credentials rotate`
gives the user not in use a new password in the definitions (the broker learns it at `broker-boot reconcile`), then
`activate` hands it to the identity's clients through the file they mount; the password they had keeps working until
the next rotation, which retires it. At no moment does the credential in the clients' file fail. Here the operator's
procedure runs under steady task traffic against the test stack's copy of secrets/, twice over, for the first
tenant's worker. Certificate login: no identity has a password, so there is none to rotate (or to leak)."""
import json
import time
from pathlib import Path

import pytest
from pika.exceptions import ProbableAuthenticationError

from tests.harness.readiness import listed_connections, logs, wait_for_log, wait_until
from tests.security.steady_traffic import SteadyTraffic
from tools import credentials, settings

controls = pytest.mark.controls
PROJECT_DIR = Path(__file__).resolve().parents[2]
LOGIN = settings.load(PROJECT_DIR).login


def run(broker, *command: str) -> str:
    result = broker.exec_run(list(command))
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, f"{' '.join(command)}: {output}"
    return output


def celery_users(broker, users: tuple[str, ...]) -> set[str] | None:
    """Which of `users` the running Celery (py-amqp) connections are logged in as: the worker's, not the test's own
    pika logins (None if the CLI failed this time)."""
    rows = listed_connections(broker, "user", "client_properties", "state")
    if rows is None:
        return None
    return {user for user, properties, state in rows if user in users and "py-amqp" in properties
            and state == "running"}


def logs_in(stack, vhost: str, identity: str, user: str, password: str) -> str:
    """'accepted', or the refusal, for `user` with `password` (with the identity's own certificate)."""
    try:
        stack.endpoint.connect(vhost, "worker", user=user, password=password, certificate=identity).close()
    except ProbableAuthenticationError as exc:
        return f"refused ({type(exc).__name__})"
    return "accepted"


def rotate(stack, vhost: str, identity: str, secrets_dir: Path) -> tuple[str, str, str]:
    """The README's procedure, with no restart: stage a new password for the user not in use, reconcile the broker
    with the definitions and close that user's connections (logged in with the password just retired), then hand
    the new credential to the clients. Returns (the user staged, the user in use, how the current file's credential
    fared between the two steps)."""
    staged, in_use = credentials.rotate(stack.project_dir, identity, secrets_dir)
    run(stack.broker, "broker-boot", "reconcile")
    run(stack.broker, "rabbitmqctl", "-q", "close_all_user_connections", staged, "password rotated")
    current = credentials.read_credential(credentials.password_path(secrets_dir, identity))
    between = logs_in(stack, vhost, identity, *current)
    assert credentials.activate(stack.project_dir, identity, secrets_dir) == (staged, in_use)
    return staged, in_use, between


@controls("CRED-08")
def test_credentials_rotate_without_downtime(stack, vhosts, test_secrets, celery_client, record_property):
    """The bake's login decides what there is to prove (both paths are this one test: none is ever skipped)."""
    if LOGIN == "password":
        password_rotation_under_traffic(stack, vhosts, test_secrets, record_property)
    else:
        no_identity_has_a_password(stack, vhosts, test_secrets, record_property)


def password_rotation_under_traffic(stack, vhosts, test_secrets, record_property):
    from {{ cookiecutter.package_name }}.tasks.arithmetic import add
    vhost = vhosts[0]
    identity = stack.stack.topology.user_name(vhost, "worker")
    first, second = stack.stack.topology.password_users(identity)
    path = credentials.password_path(test_secrets, identity)
    baked = credentials.read_credential(path)
    assert baked[0] == first, baked[0]
    traffic = SteadyTraffic(add)
    traffic.start()
    try:
        wait_until(lambda: celery_users(stack.broker, (first, second)) == {first}, timeout=60,
                   what=f"the worker logged in as {first}")
        traffic.wait_for(5)
        # First rotation: the second user gets a password and the file; the baked one still works meanwhile (a
        # client on another host that has not read the new file yet keeps connecting).
        *moved_to, between = rotate(stack, vhost, identity, test_secrets)
        current = credentials.read_credential(path)
        overlap = {"between the steps": between, "baked": logs_in(stack, vhost, identity, *baked),
                   "new": logs_in(stack, vhost, identity, *current)}
        assert overlap == dict.fromkeys(overlap, "accepted"), f"rotated to {moved_to}: {overlap}"
        assert moved_to == [second, first]
        # The worker's next connection (the operator closes the old user's, as a network may) reads the new file.
        run(stack.broker, "rabbitmqctl", "-q", "close_all_user_connections", first, "moving to the new password")
        moved = time.monotonic()
        wait_until(lambda: celery_users(stack.broker, (first, second)) == {second}, timeout=90,
                   what=f"the worker logged in again, as {second}")
        traffic.wait_for(5, since=moved)
        # Second rotation: the first user gets a new password; the baked one is retired, the first rotation's stays.
        seen = logs(stack.broker).count(f"user '{first}' - invalid credentials")
        assert rotate(stack, vhost, identity, test_secrets) == (first, second, "accepted")
        after = {"baked": logs_in(stack, vhost, identity, *baked),
                 "first rotation's": logs_in(stack, vhost, identity, *current),
                 "second rotation's": logs_in(stack, vhost, identity, *credentials.read_credential(path))}
        # And back: its next connection is the first user's again (which also leaves the stack as the other tests
        # expect it, each identity logged in under its own name).
        run(stack.broker, "rabbitmqctl", "-q", "close_all_user_connections", second, "moving to the new password")
        moved = time.monotonic()
        wait_until(lambda: celery_users(stack.broker, (first, second)) == {first}, timeout=90,
                   what=f"the worker logged in again, as {first}")
        traffic.wait_for(5, since=moved)
    finally:
        traffic.stop()
    record_property("evidence", f"{identity}: after the first rotation {overlap}; the worker moved from {first} to "
                                f"{second}; after the second {after}, and the worker back to {first}; "
                                f"{len(traffic.completed)} tasks completed and "
                                f"{len(traffic.failures)} failed meanwhile, longest gap between completions "
                                f"{traffic.longest_gap():.2f} s")
    assert after == {"baked": "refused (ProbableAuthenticationError)", "first rotation's": "accepted",
                     "second rotation's": "accepted"}, after
    wait_for_log(stack.broker, f"user '{first}' - invalid credentials", timeout=10, occurrences=seen + 1)
    assert traffic.failures == [], traffic.failures[:3]
    # The new passwords went where the baked one goes (CRED-04): nowhere but the files.
    worker = stack.services()[stack.stack.worker_service(vhost)]
    worker.reload()
    seen_by_docker = logs(worker) + json.dumps(worker.attrs)
    leaked = [user for user, password in (current, credentials.read_credential(path)) if password in seen_by_docker]
    assert leaked == [], f"rotated passwords of {leaked} in the worker's logs or docker inspect"


def no_identity_has_a_password(stack, vhosts, test_secrets, record_property):
    """Nothing to rotate: one broker user per identity, none with a password hash, no password file, and the
    rotation tool says so (each identity's certificate is rotated instead: TLS-07)."""
    exported = json.loads(run(stack.broker, "rabbitmqctl", "-q", "export_definitions", "-", "--format", "json"))
    users = {user["name"]: user["password_hash"] for user in exported["users"]}
    identities = stack.stack.identities
    second_users = [stack.stack.topology.password_users(identity)[1] for identity in identities]
    with pytest.raises(credentials.CredentialError, match="there is no password to rotate"):
        credentials.rotate(stack.project_dir, identities[0], test_secrets)
    with stack.connect(vhosts[0], "worker"):         # legitimate path: the certificate alone logs in
        pass
    hashed = sorted(identity for identity in identities if users.get(identity))
    record_property("evidence", f"broker users: {sorted(users)}; identities with a password hash: {hashed}")
    # (Other users are other controls': guest is CRED-01's, a retired one CRED-05's.)
    assert all(identity in users for identity in identities) and hashed == []
    assert [user for user in second_users if user in users] == [], "a second user per identity"
    # (The dashboards' logins, flower = https, are no broker credentials.)
    assert [path for identity in identities for path in credentials.credential_files(test_secrets, identity)
            if path.exists()] == []
