"""Non-root, read-only, capability-free containers with limits, healthchecks and pinned dependencies
(RUN-01..05)."""
import re

import pytest

from tests.security.probes import proc_status

controls = pytest.mark.controls
UNREADABLE_BY_DESIGN = "/var/cache/apt/archives/partial"


def containers(stack):
    return stack.services()


@controls("RUN-01")
def test_processes_run_as_fixed_non_root_uid(stack, record_property):
    expected = {"broker": stack.stack.broker_uid}
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
    record_property("evidence", f"(health, memory bytes, pids limit): {evidence}")


@controls("RUN-05")
def test_dependencies_pinned_by_hash_and_no_build_tools(stack):
    lock = (stack.project_dir / "requirements" / "worker.lock").read_text()
    requirements = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\$", lock, flags=re.M)
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", lock, flags=re.M)[1:]
    assert requirements and all("--hash=sha256:" in block for block in blocks)
    worker = next(iter(stack.workers.values()))
    for tool in ("gcc", "cc", "make", "pip", "pip3"):
        assert worker.exec_run(["sh", "-c", f"command -v {tool}"]).exit_code != 0, f"{tool} in the final image"
    assert worker.exec_run(["python3", "-m", "pip", "--version"]).exit_code != 0, "pip runs in the final image"
