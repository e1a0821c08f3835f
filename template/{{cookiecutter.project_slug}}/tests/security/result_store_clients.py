"""How the result store's tests (result_backend = redis; RES-01..03) reach the store of the stack under test: through
its loopback port, as its users, with their certificates and passwords from the test copies of pki/ and secrets/.
With another result backend there is no store: each test asserts that instead (no_store)."""
from tools import credentials

ADD = "{{ cookiecutter.package_name }}.tasks.arithmetic.add"
PORT = 6379
NO_PERMISSION = "no permissions"     # Redis's NOPERM replies, lower-cased: "no permissions to access a key", ...


def no_store(stack, record_property) -> None:
    """result_backend is not redis: there is no store to reach, and nothing in the workers could reach one."""
    assert stack.stack.results_host not in stack.project.config()["services"], \
        "a result store runs without result_backend = redis"
    worker = next(iter(stack.workers.values()))
    code, output = worker.exec_run(["python3", "-c", "import redis"])
    assert code != 0 and b"No module named 'redis'" in output
    record_property("evidence", f"result_backend = {stack.stack.result_backend}: no result store in the stack, no "
                                "Redis client in the worker image")


def password_of(stack, identity: str) -> str:
    from tools import result_store
    _, password = credentials.read_credential(result_store.credential_path(stack.secrets_dir, identity))
    return password


def store(stack, identity: str | None, password: str | None = None, certificate: str | None = "same",
          port: int | None = None, check_hostname: bool = True):
    """A client of the stack's store logged in as `identity` (its own password unless given; None: no login), with
    the client certificate of `certificate` ("same": the identity's own; None: none)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    pair = identity if certificate == "same" else certificate
    cert, key = stack.endpoint.certificate_files(pair) if pair else (None, None)
    login = {} if identity is None else {"username": identity,
                                         "password": password if password is not None else password_of(stack, identity)}
    return redis.Redis(host="127.0.0.1", port=port or stack.results_port, ssl=True, ssl_cert_reqs="required",
                       ssl_ca_certs=str(stack.project_dir / "pki" / "ca.crt"), ssl_check_hostname=check_hostname,
                       ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None,
                       socket_timeout=10, retry=Retry(NoBackoff(), 0), **login)


def user(stack, vhost: str, role: str) -> str:
    return stack.stack.topology.user_name(vhost, role)


def task_key(vhost: str, task_id: str) -> str:
    """Where Celery keeps a task's result in the store: the tenant's prefix, then Celery's own key."""
    return f"{vhost}:celery-task-meta-{task_id}"


def refusal(call) -> str:
    """The store's reply to a call that must be refused: the error text ('' if it was carried out)."""
    import redis
    try:
        call()
    except redis.ResponseError as exc:
        return str(exc)
    return ""


def subscribed(client, channel: str):
    """SUBSCRIBE on a connection of its own (a subscribed connection takes no other command): its confirmation."""
    def call():
        listener = client.pubsub()
        try:
            listener.subscribe(channel)
            return listener.get_message(timeout=10)
        finally:
            listener.close()
    return call


def announced_set_reply(client, key: str, length: int) -> str:
    """The store's reply to a SET that announces a value of `length` bytes (the value itself not sent)."""
    import redis
    connection = client.connection_pool.get_connection()
    try:
        connection.send_packed_command([f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${length}\r\n".encode()])
        try:
            return str(connection.read_response())
        except redis.ResponseError as exc:
            return str(exc)
    finally:
        connection.disconnect()
        client.connection_pool.release(connection)
