"""Non-root, read-only, capability-free containers with limits, healthchecks and pinned dependencies
(RUN-01..05)."""
import os
import re
import shutil
import socket
import subprocess  # nosec B404

import datetime as dt

import docker
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.harness.readiness import WORKER_READY
from tests.security.probes import proc_status
from tls import issue_client_certificate, load_ca

controls = pytest.mark.controls
UNREADABLE_BY_DESIGN = "/var/cache/apt/archives/partial"


def containers(stack):
    return stack.services()


@controls("RUN-01")
def test_processes_run_as_fixed_non_root_uid(stack, record_property):
    expected = {"broker": stack.stack.broker_uid, stack.stack.results_host: stack.stack.results_uid}
    evidence = {}
    for name, container in containers(stack).items():
        uids = proc_status(container)["Uid"].split()
        evidence[name] = uids
        assert len(set(uids)) == 1 and int(uids[0]) == expected.get(name, stack.stack.worker_uid), name
    record_property("evidence", f"uid (real, effective, saved, fs) per container: {evidence}")


@controls("RUN-03")
def test_no_capabilities_and_no_new_privileges(stack, record_property):
    evidence = {}
    for name, container in containers(stack).items():
        status = proc_status(container)
        evidence[name] = (status["CapEff"], status["CapPrm"], status["CapBnd"], status["NoNewPrivs"])
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, name
        # A non-root process has no effective capabilities anyway; the bounding set is what cap_drop
        # empties, and it caps what any setuid or file-capability binary could ever regain.
        assert int(status["CapBnd"], 16) == 0, name
        assert status["NoNewPrivs"].strip() == "1", name
    record_property("evidence", f"(CapEff, CapPrm, CapBnd, NoNewPrivs): {evidence}")


@controls("RUN-03")
def test_no_setuid_or_setgid_binaries(stack):
    for name, container in containers(stack).items():
        # As root inside the container (still without capabilities) so no directory is skipped unread.
        result = container.exec_run(["find", "/", "-xdev", "-perm", "/6000", "-type", "f"], user="0", demux=True)
        found, errors = (part.decode() if part else "" for part in result.output)
        assert found.strip() == "", f"{name}: {found}"
        # Without CAP_DAC_READ_SEARCH even root cannot enter apt's private, empty download directory.
        unread = [line for line in errors.splitlines() if UNREADABLE_BY_DESIGN not in line]
        assert unread == [], f"{name}: {unread}"


@controls("RUN-02")
def test_root_filesystem_is_read_only_but_tmp_is_writable(stack, record_property):
    for name, container in containers(stack).items():
        refused = container.exec_run(["sh", "-c", "echo x > /etc/tampered"])
        assert refused.exit_code != 0 and b"Read-only file system" in refused.output, name
        assert container.exec_run(["sh", "-c", "echo x > /tmp/probe && rm /tmp/probe"]).exit_code == 0, name
    record_property("evidence", "writing /etc: 'Read-only file system' in every container; /tmp (tmpfs) writable")


@controls("RUN-04")
def test_limits_and_healthchecks(stack, record_property):
    import time
    evidence = {}
    for name, container in containers(stack).items():
        deadline = time.monotonic() + 90
        while True:
            container.reload()
            health = container.attrs["State"].get("Health", {}).get("Status")
            if health == "healthy" or time.monotonic() > deadline:
                break
            time.sleep(1)
        host = container.attrs["HostConfig"]
        evidence[name] = (health, host["Memory"], host["PidsLimit"])
        assert health == "healthy", name
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, name
        # Each health log also says when the container's certificate expires (the result store's, which has no tool
        # to read one, that it answers: its certificate's expiry is in `python -m tls metrics`, like every other's).
        output = container.attrs["State"]["Health"]["Log"][-1]["Output"]
        evidence[name] += (output.strip(),)
        if name == stack.stack.results_host:
            assert "result store answers" in output, output
            continue
        expected = "broker certificate expires" if name == "broker" else "client certificate expires"
        assert expected in output and "days left" in output, output
    record_property("evidence", f"(health, memory bytes, pids limit[, health output]): {evidence}")


@controls("RUN-04")
def test_the_broker_healthcheck_fails_once_its_certificate_has_expired(stack, record_property):
    """The healthcheck's certificate part, run in the running broker on an expired certificate of the project CA
    (the broker's own certificate is valid: its healthy status and expiry line are the twin, above)."""
    pki = stack.project_dir / "pki"
    _, expired = issue_client_certificate(*load_ca(pki), "producer", valid_days=1,
                                          not_valid_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))
    check = stack.broker.exec_run(["sh", "-c", 'printf %s "$0" > /tmp/expired.crt && '
                                   "BROKER_CERTIFICATE=/tmp/expired.crt broker-boot health",
                                   expired.public_bytes(Encoding.PEM).decode()])
    output = check.output.decode(errors="replace").strip()
    record_property("evidence", f"healthcheck on an expired certificate: exit {check.exit_code}, {output!r}")
    assert check.exit_code != 0
    assert output.endswith(f"broker certificate expired on {expired.not_valid_after_utc:%Y-%m-%d}"), output


@controls("RUN-05")
def test_dependencies_pinned_by_hash_and_no_build_tools(stack):
    for lock_file in sorted((stack.project_dir / "requirements").glob("*.lock")):   # worker's, dashboard's
        lock = lock_file.read_text()
        requirements = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\$", lock, flags=re.M)
        blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", lock, flags=re.M)[1:]
        assert requirements and all("--hash=sha256:" in block for block in blocks), lock_file
    worker = next(iter(stack.workers.values()))
    for tool in ("gcc", "cc", "make", "pip", "pip3"):
        assert worker.exec_run(["sh", "-c", f"command -v {tool}"]).exit_code != 0, f"{tool} in the final image"
    assert worker.exec_run(["python3", "-m", "pip", "--version"]).exit_code != 0, "pip runs in the final image"


def default_gateways(container) -> list[str]:
    """The container's IPv4 default-route gateways, read from its own routing table (nothing is sent anywhere)."""
    table = container.exec_run(["cat", "/proc/net/route"]).output.decode().splitlines()[1:]
    return [socket.inet_ntoa(bytes.fromhex(fields[2])[::-1]) for fields in map(str.split, table)
            if len(fields) > 2 and fields[1] == "00000000"]


def host_isolation_rules(network) -> list[str] | None:
    """The host firewall's DROP rules that keep an internal bridge's traffic inside its subnet, or None when this
    process cannot read the firewall (not root, no iptables, or an engine on another host)."""
    if os.geteuid() != 0 or not shutil.which("iptables") or os.environ.get("DOCKER_HOST", "unix://").split(":")[0] != "unix":
        return None
    listed = subprocess.run(["iptables", "-S", "DOCKER-ISOLATION-STAGE-1"], capture_output=True, text=True,  # nosec
                            check=False).stdout
    bridge = "br-" + network.id[:12]
    return [rule for rule in listed.splitlines() if bridge in rule and rule.endswith("-j DROP")]


@controls("RUN-06")
def test_workers_have_no_route_out_of_the_stack(stack, record_property):
    """Docker 25 and later give an internal network no gateway: the worker has no default route at all. Older
    engines keep a route to the bridge and drop what leaves the subnet in the host firewall, which is read
    instead (as root). Either way nothing is sent: only tables are read."""
    engine = docker.from_env()
    evidence = {}
    for vhost, worker in stack.workers.items():
        networks = [engine.networks.get(attached["NetworkID"])
                    for attached in worker.attrs["NetworkSettings"]["Networks"].values()]
        internal = {network.name: network.attrs["Internal"] for network in networks}
        gateways = default_gateways(worker)
        if stack.stack.worker_egress == "allowed":
            assert not all(internal.values()) and gateways, f"worker-{vhost} was given egress but has none"
            evidence[vhost] = f"egress allowed: {internal}, default route via {gateways}"
            continue
        assert all(internal.values()), f"worker-{vhost} joins a network that is not internal: {internal}"
        if not gateways:
            evidence[vhost] = f"{internal}; no default route"
        else:
            (network,) = networks
            assert gateways == [network.attrs["IPAM"]["Config"][0]["Gateway"]], gateways
            rules = host_isolation_rules(network)
            subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
            if rules is not None:
                assert any(f"! -d {subnet} -i br-{network.id[:12]}" in rule for rule in rules), rules
            evidence[vhost] = (f"{internal}; default route only to the bridge {gateways[0]} (engine before 25), host "
                               + (f"drops what leaves {subnet}: {rules}" if rules is not None
                                  else "firewall not readable by this user"))
        # The legitimate path: the broker is reachable on the internal network (the worker is connected to it).
        assert WORKER_READY in worker.logs().decode(errors="replace")
    record_property("evidence", f"per worker: {evidence}")
