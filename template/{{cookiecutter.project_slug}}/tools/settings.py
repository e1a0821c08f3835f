"""stack.toml, read in one place: the settings the host-side tools, the tests and the benchmark share."""
from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

PROJECT_DIR = Path(__file__).resolve().parents[1]
LOGINS = ("certificate", "password")
METRICS_SCRAPER = "monitoring"    # the client certificate (pki/monitoring.crt) a Prometheus scrapes with (MON-01)
DASHBOARD_PORT = 5555             # Flower's HTTPS port inside its container (MON-02)
# The optional parts a bake may add, by bake option: each may carry its own controls and weakenings (the catalog's
# `weakened_by_<feature>`), which exist only in a project that has it.
FEATURES = ("flower", "sentry", "redis")
RESULT_BACKENDS = ("rpc", "none", "redis")
ERROR_REPORTS_DSN = "error-reports.dsn"        # secrets/: the Sentry DSN (error_reports = sentry), empty until set
ERROR_REPORTS_CA = "error-reports-ca.pem"      # secrets/: a self-hosted Sentry's CA (instead of certifi's), or empty


class SettingsError(ValueError):
    """stack.toml is missing or incomplete; the message says which file and which key."""


@dataclass(frozen=True)
class Images:
    python: str            # official worker base image (pinned)
    rabbitmq: str          # official broker base image (pinned)
    redis: str             # official result store base image (pinned; built on only with [results] backend = "redis")
    worker: str            # tag of the worker image this project builds
    broker: str            # tag of the broker image this project builds
    dashboard: str         # tag of the Flower image (built only with [monitoring] flower = "https")
    results: str           # tag of the result store image (built only with [results] backend = "redis")
    standin_prefix: str    # offline stand-ins are tagged <prefix>-<kind>:<version>


@dataclass(frozen=True)
class StackSettings:
    project_dir: Path
    project: str           # compose project name
    package: str           # Python package of the Celery app
    images: Images
    broker_host: str       # compose service name and the SAN clients check
    broker_uid: int
    broker_gid: int
    management: str        # "off" or "https"
    metrics: str           # "tls" (Prometheus over mutual TLS, 15691) or "off"
    login: str             # "certificate" (x509 EXTERNAL, no passwords) or "password" (PLAIN over mutual TLS)
    worker_uid: int
    worker_gid: int
    worker_egress: str     # "none" (the broker only) or "allowed"
    flower: str            # "https" (a read-only Flower dashboard per vhost, MON-02/03) or "off"
    error_reports: str     # "sentry" (failed tasks reported over verified HTTPS, secrets masked, LOG-03) or "off"
    vhosts: tuple[str, ...]
    priority_vhosts: tuple[str, ...]    # tenants whose workers also run the priority queue's tasks
    result_backend: str = "rpc"         # "rpc", "none" or "redis" (the result store, service `results_host`)
    results_host: str = "results"       # the result store's compose service, host name and certificate name
    results_uid: int = 999
    results_gid: int = 999

    @cached_property
    def topology(self) -> ModuleType:
        """src/<package>/topology.py, loaded by path: queue names, roles and user names live there, once,
        and it imports nothing, so host tools read it without Celery."""
        path = self.project_dir / "src" / self.package / "topology.py"
        spec = importlib.util.spec_from_file_location(f"{self.package}_topology", path)
        if spec is None or spec.loader is None:
            raise SettingsError(f"{path} cannot be loaded; is [project] package in stack.toml right?")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    @property
    def identities(self) -> list[str]:
        """Every broker user of the stack; each has its own client certificate, pki/<user>.crt, whose subject is
        the user name (one leaked or revoked key is one identity's, not every tenant's)."""
        return [self.topology.user_name(vhost, role) for vhost in self.vhosts for role in self.roles]

    @property
    def dashboard(self) -> bool:
        """Whether each vhost has a Flower dashboard (and so its monitor role, and workers that send task events)."""
        return self.flower == "https"

    @property
    def reports_errors(self) -> bool:
        """Whether the workers report failed tasks to a Sentry (and so mount its DSN and CA secret files)."""
        return self.error_reports == "sentry"

    @property
    def result_store(self) -> bool:
        """Whether results go to the result store (service `results_host`), where chords can be joined."""
        return self.result_backend == "redis"

    @property
    def result_store_identities(self) -> list[str]:
        """The result store's users: one per tenant and role (workers store, producers read); none without it."""
        return [self.topology.user_name(vhost, role) for vhost in self.vhosts
                for role in self.topology.RESULT_STORE_ROLES] if self.result_store else []

    @property
    def server_hosts(self) -> list[str]:
        """The project's TLS servers besides the broker, each with a certificate named after its host (pki/)."""
        return [self.results_host] if self.result_store else []

    @property
    def features(self) -> frozenset[str]:
        """The optional parts (FEATURES) this bake has."""
        present = {"flower": self.dashboard, "sentry": self.reports_errors, "redis": self.result_store}
        return frozenset(feature for feature, baked in present.items() if baked)

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles (broker users) of every vhost."""
        return self.topology.roles(self.dashboard)

    @property
    def tls_ports(self) -> set[int]:
        """The broker's ports, every one TLS: AMQPS, and the management UI's and the metrics' where baked in."""
        return ({5671} | ({15671} if self.management == "https" else set())
                | ({15691} if self.metrics == "tls" else set()))

    @property
    def client_certificates(self) -> list[str]:
        """Every client certificate the bake issues: the identities', and the metrics scraper's, which is no broker
        user (it reads the broker's HTTPS metrics endpoint, nothing else)."""
        return [*self.identities, *([METRICS_SCRAPER] if self.metrics == "tls" else [])]

    @property
    def dashboard_certificates(self) -> list[str]:
        """The dashboards' server certificates (pki/dashboard-<vhost>.crt, for localhost and 127.0.0.1 only: a
        dashboard is reached through its port published on loopback, nowhere else)."""
        return [self.dashboard_service(vhost) for vhost in self.vhosts] if self.dashboard else []

    @property
    def broker_users(self) -> list[str]:
        """The users the broker holds for them: one per identity, two with password login (CRED-08)."""
        return [user for identity in self.identities for user in self.topology.broker_users(identity, self.passwords)]

    def tenant_queues(self, vhost: str) -> list[str]:
        """The queues whose tasks `vhost`'s worker runs (TEN-03, allowlist.py)."""
        return [self.topology.TASK_QUEUE, *([self.topology.PRIORITY_QUEUE] if vhost in self.priority_vhosts else [])]

    @property
    def passwords(self) -> bool:
        """Whether broker users have passwords at all (only with `login = "password"`)."""
        return self.login == "password"

    def worker_service(self, vhost: str) -> str:
        return f"worker-{vhost}"

    def producer_service(self, vhost: str) -> str:
        return f"producer-{vhost}"

    def dashboard_service(self, vhost: str) -> str:
        return f"dashboard-{vhost}"


def load(project_dir: Path | str = PROJECT_DIR) -> StackSettings:
    """Read <project_dir>/stack.toml; a missing file or key is a SettingsError naming it."""
    project_dir = Path(project_dir).resolve()
    path = project_dir / "stack.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path} not found; run this from the project's root") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from None

    def get(section: str, key: str):
        try:
            return raw[section][key] if section else raw[key]
        except KeyError:
            raise SettingsError(f"{path}: {f'[{section}] ' if section else ''}{key} is missing") from None

    vhosts = tuple(get("workers", "vhosts"))
    if not vhosts:
        raise SettingsError(f"{path}: [workers] vhosts is empty; a stack needs at least one vhost")
    login = get("broker", "login")
    if login not in LOGINS:
        raise SettingsError(f"{path}: [broker] login is {login!r}; it must be one of {', '.join(LOGINS)}")
    error_reports, egress = get("monitoring", "error_reports"), get("workers", "egress")
    if error_reports not in ("off", "sentry"):
        raise SettingsError(f"{path}: [monitoring] error_reports is {error_reports!r}; it must be off or sentry")
    result_backend = get("results", "backend")
    if result_backend not in RESULT_BACKENDS:
        raise SettingsError(f"{path}: [results] backend is {result_backend!r}; it must be one of "
                            f"{', '.join(RESULT_BACKENDS)}")
    if error_reports == "sentry" and egress != "allowed":
        raise SettingsError(f"{path}: [monitoring] error_reports = \"sentry\" needs [workers] egress = \"allowed\": "
                            "the workers send their reports out of the stack")
    return StackSettings(
        project_dir=project_dir,
        project=get("", "project"),
        package=get("", "package"),
        images=Images(**{key: get("images", key) for key in ("python", "rabbitmq", "redis", "worker", "broker",
                                                              "dashboard", "results", "standin_prefix")}),
        broker_host=get("broker", "host"),
        broker_uid=int(get("broker", "uid")),
        broker_gid=int(get("broker", "gid")),
        management=get("broker", "management"),
        metrics=get("broker", "metrics"),
        login=login,
        worker_uid=int(get("workers", "uid")),
        worker_gid=int(get("workers", "gid")),
        worker_egress=egress,
        flower=get("monitoring", "flower"),
        error_reports=error_reports,
        vhosts=vhosts,
        priority_vhosts=tuple(get("workers", "priority_vhosts")),
        result_backend=result_backend,
        results_host=get("results", "host"),
        results_uid=int(get("results", "uid")),
        results_gid=int(get("results", "gid")),
    )
