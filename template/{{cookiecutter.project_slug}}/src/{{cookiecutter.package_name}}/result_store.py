"""The result store (bake option result_backend = redis): Celery's Redis backend over mutual TLS with the host name
checked, logged in as this process's own user of the store (one per tenant and role, its password read from its
file at every connection), its tenant's results under the tenant's key prefix (the store confines each user to
it), and every result bounded in size."""
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from celery import states
from celery.backends.redis import RedisBackend
from redis.credentials import CredentialProvider

from . import errors, topology
from .password_login import read_credential

# A result above this is refused before it reaches the store: the task fails with Celery's BackendStoreError
# ("value too large for Redis backend") instead. Below the store's own limit on any value (1 MiB,
# results/redis.conf proto-max-bulk-len), which stops a client that skips this check.
MAX_RESULT_BYTES = 512 * 1024
PORT = 6379
# A waiting client also reads its results from the store this often: a result's notification (pub/sub, delivered
# at most once) can be missed, and the client would otherwise wait for it until its timeout (seen in the security
# suite: one call in a few hundred, the result stored and never announced to the waiting client).
MISSED_NOTIFICATION_CHECK_SECONDS = 2.0


class BoundedRedisBackend(RedisBackend):
    """Celery's Redis backend with results bounded by MAX_RESULT_BYTES rather than Redis's 512 MB, and waiting
    clients that do not depend on every notification arriving."""

    _MAX_STR_VALUE_SIZE = MAX_RESULT_BYTES
    supports_chords = True      # header_policy.py lets chord messages in only where the backend joins them

    def _wait_for_pending(self, result, timeout=None, on_interval=None, on_message=None, **kwargs):
        checked = [time.monotonic()]

        def each_interval():            # Celery calls it about once a second while the client waits
            if on_interval is not None:
                on_interval()
            if time.monotonic() - checked[0] >= MISSED_NOTIFICATION_CHECK_SECONDS:
                checked[0] = time.monotonic()
                self.read_stored_results(result)

        return super()._wait_for_pending(result, timeout=timeout, on_interval=each_interval, on_message=on_message,
                                         **kwargs)

    def read_stored_results(self, result) -> None:
        """Hand the results already in the store (of `result`, or of each result of a group) to the waiting client,
        as Celery itself does after reconnecting."""
        nodes = [node for node in getattr(result, "results", None) or [result] if getattr(node, "id", None)]
        if not nodes:
            return
        for meta in self.client.mget([self.get_key_for_task(node.id) for node in nodes]):
            if meta:
                decoded = self.decode_result(meta)
                if decoded["status"] in states.READY_STATES:
                    self.result_consumer.on_state_change(decoded, None)


class CredentialFile(CredentialProvider):
    """The store user and password from the credential file, read at each new connection (redis-py asks for them
    once per connection), so a rotated password is used without a restart."""

    def __init__(self, path: Path, identity: str):
        self.path, self.identity = path, identity

    def get_credentials(self) -> tuple[str, str]:
        return read_credential(self.path, self.identity, users=(self.identity,))


@dataclass(frozen=True)
class ResultStoreSettings:
    url: str                 # rediss://<identity>@<host>:<port>/<db>, without password
    password_file: Path      # {"user": <identity>, "password": ...}
    tenant: str              # the vhost: the key prefix this identity's results live under
    ca_file: Path
    cert_file: Path          # the same client certificate as for the broker: one identity, one pair
    key_file: Path

    @classmethod
    def from_env(cls, tenant: str, ca_file: Path, cert_file: Path, key_file: Path, secrets_dir: str
                 ) -> "ResultStoreSettings":
        url = os.environ.get("TASKS_RESULT_STORE_URL", "").strip()
        if not url:
            raise errors.ImproperlyConfigured(errors.MISSING_SETTING.format(name="TASKS_RESULT_STORE_URL"))
        parts = urlsplit(url)
        if parts.scheme != "rediss":
            raise errors.ImproperlyConfigured(errors.PLAINTEXT_RESULT_STORE.format(scheme=parts.scheme))
        if parts.password is not None or not parts.username or not parts.hostname:
            raise errors.ImproperlyConfigured(errors.RESULT_STORE_URL.format(url=parts._replace(netloc=(
                parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()))
        path = Path(os.environ.get("TASKS_RESULT_STORE_PASSWORD_FILE", f"{secrets_dir}/results_password"))
        if not path.is_file() or not os.access(path, os.R_OK):
            raise errors.ImproperlyConfigured(errors.MISSING_FILE.format(what="result store password", path=path))
        settings = cls(url, path, tenant, ca_file, cert_file, key_file)
        read_credential(path, settings.identity, users=(settings.identity,))     # a wrong file fails here
        return settings

    @property
    def identity(self) -> str:
        return urlsplit(self.url).username or ""

    def config(self) -> dict:
        """Celery settings for this store."""
        parts = urlsplit(self.url)
        return {
            "result_backend": f"{__package__}.result_store.BoundedRedisBackend+rediss://{parts.hostname}:"
                              f"{parts.port or PORT}{parts.path or '/0'}",
            "redis_backend_use_ssl": {
                "ssl_cert_reqs": ssl.CERT_REQUIRED,           # the store proves it is the project's...
                "ssl_check_hostname": True,                   # ...and the one named in the URL
                "ssl_ca_certs": str(self.ca_file),
                "ssl_certfile": str(self.cert_file),          # the store refuses a client without one
                "ssl_keyfile": str(self.key_file),
                "ssl_min_version": ssl.TLSVersion.TLSv1_2,
            },
            "redis_backend_credential_provider": CredentialFile(self.password_file, self.identity),
            "result_backend_transport_options": {"global_keyprefix": topology.result_key_prefix(self.tenant)},
            # A dead store fails a call within seconds instead of hanging it; transient errors are retried.
            "redis_socket_connect_timeout": 5,
            "redis_socket_timeout": 10,
            "redis_retry_on_timeout": True,
            "result_backend_always_retry": True,
            "result_backend_max_retries": 10,
        }
