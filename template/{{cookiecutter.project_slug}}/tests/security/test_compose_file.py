"""compose.yaml itself, as compose reads it: every service hardened, only the TLS port published and only on
loopback, no secret in the environment, a service pair per vhost (TLS-01, CRED-04, RUN-01..04). The live tests
prove the same on running containers; these name the line to fix before anything starts. CRED-06: each service
presents its own identity's certificate."""
from pathlib import Path

import pytest

from tools import settings
from tools.compose import ComposeProject

controls = pytest.mark.controls
PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> dict:
    stack = settings.load(PROJECT_DIR)
    return ComposeProject(stack.project_dir, stack.project).config()


@pytest.fixture(scope="module")
def stack() -> settings.StackSettings:
    return settings.load(PROJECT_DIR)


@controls("TLS-01")
def test_only_the_tls_ports_are_published_and_only_on_loopback(model, stack, record_property):
    published = [(name, port.get("host_ip"), port["target"]) for name, service in model["services"].items()
                 for port in service.get("ports", [])]
    record_property("evidence", f"published: {published}")
    expected = [("broker", "127.0.0.1", port) for port in stack.tls_ports]
    expected += [(stack.dashboard_service(vhost), "127.0.0.1", settings.DASHBOARD_PORT)
                 for vhost in stack.vhosts if stack.dashboard]      # Flower: HTTPS only (MON-02)
    expected += [(stack.results_host, "127.0.0.1", 6379)] if stack.result_store else []   # TLS only (RES-01)
    assert sorted(published) == sorted(expected)


@controls("RUN-01")
def test_every_service_runs_as_a_fixed_non_root_user(model, record_property):
    users = {name: service.get("user") for name, service in model["services"].items()}
    record_property("evidence", f"users: {users}")
    for name, user in users.items():
        uid, _, gid = str(user or "").partition(":")
        assert uid.isdigit() and gid.isdigit() and int(uid) > 0 and int(gid) > 0, f"{name}: user {user!r}"


@controls("RUN-02")
def test_every_service_has_a_read_only_root_filesystem(model):
    for name, service in model["services"].items():
        assert service.get("read_only") is True, name


@controls("RUN-03")
def test_every_service_drops_all_capabilities_and_new_privileges(model):
    for name, service in model["services"].items():
        assert service.get("cap_drop") == ["ALL"] and not service.get("cap_add"), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert not service.get("privileged"), name


@controls("RUN-04")
def test_every_service_has_memory_and_process_limits(model, record_property):
    limits = {name: (service.get("mem_limit"), service.get("pids_limit")) for name, service in model["services"].items()}
    record_property("evidence", f"(memory bytes, pids): {limits}")
    for name, (memory, pids) in limits.items():
        assert memory and int(memory) > 0 and pids and int(pids) > 0, name


@controls("CRED-04")
def test_secrets_are_files_never_environment_values(model):
    for name, service in model["services"].items():
        for key in service.get("environment") or {}:
            assert not any(word in key.upper() for word in ("PASS", "SECRET", "TOKEN", "KEY")), f"{name}: {key}"
    for name, secret in model.get("secrets", {}).items():
        assert set(secret) == {"name", "file"} or "file" in secret, f"secret {name} is not a file: {secret}"


def clients(stack: settings.StackSettings, vhost: str) -> list[tuple[str, str]]:
    """(service, role) of each of the vhost's broker clients: worker, producer, and its dashboard's monitor."""
    return [(stack.worker_service(vhost), "worker"), (stack.producer_service(vhost), "producer"),
            *([(stack.dashboard_service(vhost), stack.topology.MONITOR_ROLE)] if stack.dashboard else [])]


@controls("CRED-02")
def test_each_vhost_has_its_own_worker_and_producer_identity(model, stack):
    """stack.toml and compose.yaml agree: every vhost has its services, logging in as that vhost's own users."""
    for vhost in stack.vhosts:
        for service_name, role in clients(stack, vhost):
            service = model["services"].get(service_name)
            assert service is not None, f"stack.toml lists vhost {vhost} but compose.yaml has no {service_name}"
            url = service["environment"]["TASKS_BROKER_URL"]
            assert url.startswith(f"amqps://{stack.topology.user_name(vhost, role)}@") and url.endswith(f"/{vhost}"), url
            sources = {entry["source"] for entry in service["secrets"]}
            # Certificate login has no passwords: the certificate (CRED-06) is the whole credential.
            assert (f"{vhost}_{role}_password" in sources) == stack.passwords, f"{service_name} mounts {sorted(sources)}"


@controls("CRED-06")
def test_each_service_presents_its_own_identitys_certificate(model, stack, record_property):
    """The certificate and key a service mounts are its own broker user's (pki/<user>.crt, subject = user name):
    no key serves two identities, so one leaked or revoked key is one identity's, not every tenant's."""
    files = {name: Path(secret["file"]) for name, secret in model["secrets"].items()}
    presented = {}
    for vhost in stack.vhosts:
        for service_name, role in clients(stack, vhost):
            mounted = {entry["target"]: files[entry["source"]] for entry in model["services"][service_name]["secrets"]}
            presented[service_name] = (mounted["client.crt"].name, mounted["client.key"].name)
            identity = stack.topology.user_name(vhost, role)
            assert presented[service_name] == (f"{identity}.crt", f"{identity}.key"), \
                f"{service_name} logs in as {identity} but presents {presented[service_name]}"
    record_property("evidence", f"certificate and key per service: {presented}")
    keys = [key for _, key in presented.values()]
    assert len(set(keys)) == len(keys), f"a key serves several services: {presented}"


@controls("RUN-06")
def test_workers_are_on_internal_networks_only(model, stack, record_property):
    networks = {name: service.get("networks", {}) for name, service in model["services"].items()}
    internal = {name: bool(network.get("internal")) for name, network in model["networks"].items()}
    record_property("evidence", f"internal networks: {internal}; service networks: "
                                f"{ {name: sorted(attached) for name, attached in networks.items()} }")
    assert internal.get("backend") is True
    for vhost in stack.vhosts:
        for service in (stack.worker_service(vhost), stack.producer_service(vhost)):
            outside = sorted(name for name in networks[service] if not internal[name])
            expected = ["egress"] if stack.worker_egress == "allowed" and service.startswith("worker-") else []
            assert outside == expected, f"{service} joins {outside}"
        if stack.dashboard:      # MON-02: the dashboard never shares a network with the workers
            assert sorted(networks[stack.dashboard_service(vhost)]) == ["edge"], networks[stack.dashboard_service(vhost)]


def broker_setting(stack: settings.StackSettings, key: str) -> str:
    lines = (stack.project_dir / "broker" / "rabbitmq.conf").read_text().splitlines()
    return next(line.split("=", 1)[1].strip() for line in lines if line.split("=", 1)[0].strip() == key)


@controls("TEN-01")
def test_the_brokers_memory_alarm_fires_inside_its_container_limit(model, stack, record_property):
    """A relative watermark is taken of the host's memory, not the container's: it must be absolute, and below
    the container's limit, or the OOM killer stops the broker (every tenant) before any publisher is blocked."""
    watermark = broker_setting(stack, "vm_memory_high_watermark.absolute")
    number, unit = int(watermark.rstrip("GMiB")), watermark.lstrip("0123456789")     # e.g. 768MiB
    watermark_bytes = number * {"MiB": 2**20, "GiB": 2**30}[unit]
    limit = int(model["services"]["broker"].get("mem_limit") or 0)
    record_property("evidence", f"memory alarm at {watermark} of a {limit // 2**20} MiB container" if limit else
                    f"memory alarm at {watermark}; the broker has no memory limit (RUN-04's failure, not this one's)")
    assert not limit or watermark_bytes < limit
