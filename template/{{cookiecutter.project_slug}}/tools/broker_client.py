"""Host-side AMQP access with pika, as any role of any vhost: used by the demo and the security tests."""
import json
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import pika
from pika.exceptions import ChannelClosedByBroker

from tools import credentials, settings

# The canary path is inside the worker container: checked there, never written by this code.
PICKLE_CANARY_PATH = "/tmp/pwned"  # nosec B108
# A protocol-0 pickle, written out by hand so no code here imports pickle. Unpickled, it runs
# `touch /tmp/pwned` and yields a well-formed Celery body ([0, 0], {}, {}), so a worker that accepts
# pickle executes the command *and* carries on as if nothing happened: the canary file is the evidence.
PICKLE_PAYLOAD = (b"((cposix\nsystem\n(S'touch " + PICKLE_CANARY_PATH.encode()
                  + b"'\ntRI0\nl(d(dt.")


LOGIN = "the identity logging in"     # Endpoint.parameters' default certificate


class PasswordOfferedAnyway(pika.PlainCredentials):
    """SASL PLAIN even when the broker does not offer it: pika would give up on its own, before the broker could
    refuse, so a test that a password login is refused (certificate login) needs a client that tries."""

    def response_for(self, start):
        return self.TYPE, b"\0" + self.username.encode("utf-8") + b"\0" + self.password.encode("utf-8")


class CertificateOfferedAnyway(pika.credentials.ExternalCredentials):
    """SASL EXTERNAL even when the broker does not offer it (password login), for the same reason."""

    def response_for(self, start):
        return self.TYPE, b""


@dataclass(frozen=True)
class Endpoint:
    """Where the host reaches the broker (loopback, the name its certificate carries) and with which secrets."""

    project_dir: Path
    port: int = 5671
    address: str = "127.0.0.1"
    secrets_dir: Path | None = None          # default: the project's secrets/ (test rigs bring their own)
    pki_dir: Path | None = None              # default: the project's pki/ (test rigs bring their own identities)

    @cached_property
    def stack(self) -> settings.StackSettings:
        return settings.load(self.project_dir)

    def certificate_files(self, identity: str) -> tuple[Path, Path]:
        """(certificate, key) of a broker user: each identity has its own, pki/<user>.crt and .key."""
        pki = self.pki_dir or self.project_dir / "pki"
        return pki / f"{identity}.crt", pki / f"{identity}.key"

    def tls_context(self, identity: str | None) -> ssl.SSLContext:
        """Trusts the project CA only; presents the certificate of `identity` (a broker user), or none."""
        context = ssl.create_default_context(cafile=str(self.project_dir / "pki" / "ca.crt"))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if identity is not None:
            context.load_cert_chain(*(str(path) for path in self.certificate_files(identity)))
        return context

    def password_file(self, vhost: str, role: str) -> Path:
        """Where `<vhost>-<role>`'s password is (password login only; certificate login has none)."""
        return self.identity_password_file(self.stack.topology.user_name(vhost, role))

    def identity_password_file(self, identity: str) -> Path:
        return (self.secrets_dir or self.project_dir / "secrets") / f"{identity}.password"

    def password_login(self, identity: str) -> tuple[str, str]:
        """(broker user, password) `identity` logs in with now: one of its two users (CRED-08)."""
        return credentials.read_credential(self.identity_password_file(identity))

    def credentials(self, user: str, password: str | None,
                    certificate_only: bool = False) -> pika.PlainCredentials | pika.credentials.ExternalCredentials:
        """How `user` logs in: its certificate alone (x509 EXTERNAL) or its password file (PLAIN), as the stack
        is baked; an explicit `password` always tries PLAIN and `certificate_only` EXTERNAL, to stage an attack."""
        if password is not None:
            return PasswordOfferedAnyway(user, password)
        if certificate_only:
            return CertificateOfferedAnyway()
        if not self.stack.passwords:
            return pika.credentials.ExternalCredentials()
        return pika.PlainCredentials(*self.password_login(user))

    def parameters(self, vhost: str, role: str, *, user: str | None = None, password: str | None = None,
                   certificate: str | None = LOGIN, certificate_only: bool = False,
                   context: ssl.SSLContext | None = None, heartbeat: int | None = None) -> pika.ConnectionParameters:
        """Connection parameters for `<vhost>-<role>` (or `user`), presenting the certificate of the identity logging
        in; every part can be overridden to stage an attack (`certificate`: another identity's, or None for none;
        `password`: a PLAIN login with it, `certificate_only`: an EXTERNAL login, whatever the stack's login).
        A short `heartbeat` also shortens how long the broker counts the connection once closed (30 s at most)."""
        user = user or self.stack.topology.user_name(vhost, role)
        context = context or self.tls_context(user if certificate == LOGIN else certificate)
        return pika.ConnectionParameters(
            host=self.address, port=self.port, virtual_host=vhost,
            credentials=self.credentials(user, password, certificate_only),
            ssl_options=pika.SSLOptions(context, server_hostname=self.stack.broker_host),
            connection_attempts=1, socket_timeout=10, blocked_connection_timeout=10,
            **({"heartbeat": heartbeat} if heartbeat is not None else {}),
        )

    def connect(self, vhost: str, role: str, **overrides) -> pika.BlockingConnection:
        return pika.BlockingConnection(self.parameters(vhost, role, **overrides))


@cache
def task_exchange() -> str:
    """The exchange producers publish tasks through (topology.TASK_EXCHANGE): the default one is not theirs."""
    return settings.load().topology.TASK_EXCHANGE


@cache
def dead_letter_queue() -> str:
    """The dead-letter evidence stream (topology.DEAD_LETTER_QUEUE), which only the auditor reads."""
    return settings.load().topology.DEAD_LETTER_QUEUE


def publish_raw(channel, queue: str, body: bytes, content_type: str, task_name: str,
                task_id: str = "00000000-0000-0000-0000-000000000000") -> None:
    """Publish a hand-made Celery protocol-2 message, as an attacker with publish rights could.

    Call channel.confirm_delivery() once beforehand to have a refused publish raise here."""
    channel.basic_publish(
        exchange=task_exchange(), routing_key=queue, body=body, mandatory=True,
        properties=pika.BasicProperties(
            content_type=content_type, content_encoding="binary", delivery_mode=2, correlation_id=task_id,
            headers={"lang": "py", "task": task_name, "id": task_id, "root_id": task_id, "argsrepr": "()",
                     "kwargsrepr": "{}", "origin": "attacker"},
        ),
    )


def task_message(task: str | None, args=(), kwargs=None, *, task_id: str | None = None,
                 body: bytes | None = None, **header_changes) -> tuple[bytes, dict, str]:
    """A Celery protocol-2 message as (body, headers, task id); header_changes=None removes a header."""
    task_id = task_id or str(uuid.uuid4())
    headers = {"lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
               "parent_id": None, "argsrepr": repr(tuple(args)), "kwargsrepr": repr(kwargs or {}),
               "origin": "host-tests", "ignore_result": False}
    for name, value in header_changes.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    if body is None:
        body = json.dumps([list(args), kwargs or {},
                           {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()
    return body, headers, task_id


def publish(channel, queue: str, body: bytes, headers: dict | None, *, content_type: str | None = "application/json",
            content_encoding: str | None = "utf-8", message_id: str | None = None, reply_to: str | None = None,
            correlation_id: str | None = None) -> None:
    """Publish with publisher confirms on (the channel must be in confirm mode): raises if the broker refuses."""
    channel.basic_publish(
        exchange=task_exchange(), routing_key=queue, body=body, mandatory=True,
        properties=pika.BasicProperties(content_type=content_type, content_encoding=content_encoding,
                                        delivery_mode=2, headers=headers, message_id=message_id,
                                        reply_to=reply_to, correlation_id=correlation_id))


@dataclass(frozen=True)
class DeadLetter:
    offset: int                       # its place in the dead-letter stream (a mark for later reads)
    properties: pika.BasicProperties  # headers carry the x-death reasons
    body: bytes


def read_dead_letters(connection, after: int = -1, through: int = -1, timeout: float = 30) -> list[DeadLetter]:
    """The dead-letter evidence after offset `after` (all of it by default), read as the auditor.

    The evidence is a stream: reading it consumes nothing, so every reader sees every letter, and `after` (the
    offset of the last letter seen, evidence_mark) picks out the new ones. Its size at the start (a passive declare)
    says how many letters a read from the first retained one delivers at least: RabbitMQ refreshes a stream's count
    every few seconds, so it can lag, and a reader that knows a letter exists passes its offset as `through` to
    read at least that far. `timeout` only bounds a broker that stops delivering. A stack older than the stream
    (or weakened) has an ordinary queue: its messages are taken, as they always were there, and `after` does not
    apply."""
    channel = connection.channel()
    queue = dead_letter_queue()
    total = channel.queue_declare(queue, passive=True).method.message_count
    letters: list[DeadLetter] = []
    if total or through >= 0:
        def take(channel_, method, properties, body):
            offset = (properties.headers or {}).get("x-stream-offset")
            letters.append(DeadLetter(-1 if offset is None else int(offset), properties, body))
            channel_.basic_ack(method.delivery_tag)

        try:
            channel.basic_qos(prefetch_count=500)      # streams deliver only to consumers with a prefetch
            tag = channel.basic_consume(queue, take, arguments={"x-stream-offset": "first"})
        except ChannelClosedByBroker as refused:
            if "x-stream-offset" not in refused.reply_text:     # 406: "invalid arg" for a classic queue
                raise
            channel = connection.channel()
            channel.basic_qos(prefetch_count=500)
            tag = channel.basic_consume(queue, take)
        deadline = time.monotonic() + timeout
        while len(letters) < total or max((letter.offset for letter in letters), default=-1) < through:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue} holds {total} letters; {len(letters)} delivered in {timeout} s")
            connection.process_data_events(time_limit=0.2)
        channel.basic_cancel(tag)
    channel.close()
    return [letter for letter in letters if letter.offset > after or letter.offset == -1]


def wait_for_dead_letters(connection, enough: Callable[[list[DeadLetter]], bool], after: int = -1,
                          timeout: float = 30) -> list[DeadLetter]:
    """The letters after offset `after` once `enough(letters)` holds, or the last read once `timeout` has passed
    (the caller judges it). A refused message reaches the evidence a moment after its refusal is logged, and the
    stream's size a read starts from lags: reading again settles both."""
    deadline = time.monotonic() + timeout
    taken: list[DeadLetter] = []     # an ordinary queue's letters (a weakened stack's) come once: kept across reads
    while True:
        letters = read_dead_letters(connection, after)
        taken += [letter for letter in letters if letter.offset == -1]
        letters = [letter for letter in letters if letter.offset != -1] + taken
        if enough(letters) or time.monotonic() > deadline:
            return letters
        time.sleep(0.2)


def evidence_mark(connection) -> int:
    """The offset of the newest dead letter (-1 if none): read_dead_letters(after=mark) returns only later ones."""
    return max((letter.offset for letter in read_dead_letters(connection)), default=-1)


def death_reasons(properties: pika.BasicProperties) -> list[str]:
    return [str(entry.get("reason")) for entry in (properties.headers or {}).get("x-death", [])]
