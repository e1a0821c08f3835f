"""Read the broker connection settings from the environment and refuse anything that is not TLS."""
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import errors
from .password_login import PasswordFileLogin, read_credential
{%- if cookiecutter.result_backend == "redis" %}
from .result_store import ResultStoreSettings
{%- endif %}

DEFAULT_SECRETS_DIR = "/run/secrets"
LOGINS = ("certificate", "password")
RESULT_BACKENDS = ("rpc", "none", "redis")
# Celery itself reads these (the CLI maps BROKER_URL to --broker): any of them would silently replace the
# broker URL and TLS options checked here, so their presence is a configuration error.
CELERY_OVERRIDES = ("BROKER_URL", "RESULT_BACKEND", "CELERY_BROKER_URL", "CELERY_BROKER_READ_URL",
                    "CELERY_BROKER_WRITE_URL", "CELERY_RESULT_BACKEND", "CELERY_CONFIG_MODULE")


def client_certificate_file() -> str:
    """Where this process's client certificate is (TLS_CERT_FILE, else the mounted secret)."""
    secrets_dir = os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR)
    return os.environ.get("TLS_CERT_FILE", f"{secrets_dir}/client.crt")


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise errors.ImproperlyConfigured(errors.MISSING_SETTING.format(name=name))
    return value


def _readable_file(what: str, path: str) -> Path:
    candidate = Path(path)
    if not candidate.is_file() or not os.access(candidate, os.R_OK):
        raise errors.ImproperlyConfigured(errors.MISSING_FILE.format(what=what, path=path))
    return candidate


def _flag(name: str) -> bool:
    value = os.environ.get(name, "false").strip().lower()
    if value not in ("true", "false"):
        raise errors.ImproperlyConfigured(errors.NOT_A_FLAG.format(name=name, value=value))
    return value == "true"


def result_store_from_env(backend: str, tenant: str, ca_file: Path, cert_file: Path, key_file: Path,
                          secrets_dir: str):
    """The result store's settings with result_backend = redis (the tenant is the broker URL's vhost)."""
{%- if cookiecutter.result_backend == "redis" %}
    if backend == "redis":
        return ResultStoreSettings.from_env(tenant, ca_file, cert_file, key_file, secrets_dir)
{%- else %}
    if backend == "redis":      # this bake has no result store: its client code and library are not in the image
        raise errors.ImproperlyConfigured(errors.UNKNOWN_BACKEND.format(value=backend))
{%- endif %}
    return None


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and which identity (user + client certificate) this process presents."""

    url: str                 # amqps://identity@host:port/vhost, without password
    login: str               # "certificate" (x509 EXTERNAL: the certificate is the identity) or "password"
    password_file: Path | None   # password login only: {"user", "password"}, read at every connection
    ca_file: Path
    cert_file: Path
    key_file: Path
    result_backend: str      # "rpc", "none" or "redis" (then result_store says where and as whom)
    tls_server_name: str     # name the broker certificate must carry (defaults to the URL's host)
    send_events: bool = False    # workers publish task events (only for the Flower dashboard, MON-02)
    # result_backend = redis: the store and this identity's login there (a bake without the store has none)
    result_store: {% if cookiecutter.result_backend == "redis" %}"ResultStoreSettings | None"{% else %}None{% endif %} = None

    @property
    def login_method(self) -> str:
        """The SASL mechanism py-amqp offers: EXTERNAL hands the broker nothing but the TLS client certificate."""
        return "EXTERNAL" if self.login == "certificate" else "AMQPLAIN"

    @classmethod
    def from_env(cls) -> "BrokerSettings":
        for name in CELERY_OVERRIDES:
            if os.environ.get(name):
                raise errors.ImproperlyConfigured(errors.OVERRIDE_VARIABLE.format(name=name))
        url = _required("TASKS_BROKER_URL")
        parts = urlsplit(url)
        if parts.scheme != "amqps":
            raise errors.ImproperlyConfigured(errors.PLAINTEXT_BROKER.format(scheme=parts.scheme))
        if parts.password is not None:
            raise errors.ImproperlyConfigured(errors.CREDENTIAL_IN_URL)
        secrets_dir = os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR)
        backend = os.environ.get("TASKS_RESULT_BACKEND", "{{ cookiecutter.result_backend }}")
        if backend not in RESULT_BACKENDS:
            raise errors.ImproperlyConfigured(errors.UNKNOWN_BACKEND.format(value=backend))
        env = os.environ.get
        login = env("TASKS_BROKER_LOGIN", "{{ cookiecutter.broker_login }}")
        if login not in LOGINS:
            raise errors.ImproperlyConfigured(errors.UNKNOWN_LOGIN.format(value=login))
        ca_file = _readable_file("CA certificate", env("TLS_CA_FILE", f"{secrets_dir}/ca.crt"))
        cert_file = _readable_file("client certificate", client_certificate_file())
        key_file = _readable_file("client key", env("TLS_KEY_FILE", f"{secrets_dir}/client.key"))
        settings = cls(
            url=url,
            login=login,
            password_file=None if login == "certificate" else _readable_file(
                "broker password", env("TASKS_BROKER_PASSWORD_FILE", f"{secrets_dir}/broker_password")),
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            result_backend=backend,
            tls_server_name=env("TLS_SERVER_NAME") or urlsplit(url).hostname or "",
            send_events=_flag("TASKS_SEND_EVENTS"),
            result_store=result_store_from_env(backend, parts.path.lstrip("/"), ca_file, cert_file, key_file,
                                               secrets_dir),
        )
        if settings.password_file is not None:
            read_credential(settings.password_file, settings.identity)     # a wrong file fails here, not at login
        return settings

    @property
    def identity(self) -> str:
        """The identity this process logs in as: the URL's user (with password login, the credential file names
        which of its two broker users, topology.password_users)."""
        return urlsplit(self.url).username or ""

    def connection_url(self) -> str:
        """The URL Celery connects with: never a password (password login reads it at each connection, below)."""
        return self.url

    def authentication(self) -> tuple:
        """py-amqp's `authentication` (a transport option): none with certificate login (login_method EXTERNAL
        does it), the credential file's user and password, read at every connection, with password login."""
        if self.password_file is None:
            return ()
        return (PasswordFileLogin(self.password_file, self.identity),)

    def ssl_options(self) -> dict:
        """py-amqp TLS options: verify the broker against our CA *and* its host name, present our cert."""
        return {
            "ca_certs": str(self.ca_file),
            "certfile": str(self.cert_file),
            "keyfile": str(self.key_file),
            "cert_reqs": ssl.CERT_REQUIRED,          # an unverified broker could be anyone
            "server_hostname": self.tls_server_name,          # without it py-amqp accepts a cert for any name
            "tls_minimum_version": ssl.TLSVersion.TLSv1_2,
        }
