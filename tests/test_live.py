"""End to end on real containers: bake the defaults, run the baked project's live security suite and demo."""
import json
import sys

import pytest

from tests.support.bake import bake, run_in
from tests.support.catalog import (
    baked_tests_of,
    variant_only_weakenings,
    security_modules,
)

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def baked_defaults(tmp_path_factory):
    return bake(tmp_path_factory.mktemp("live"))


def test_baked_resilience_suite_and_full_fuzzing_pass(baked_defaults):
    result = run_in(baked_defaults, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/resilience", "tests/unit/test_fuzz_schemas.py", timeout=2400)
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_baked_security_suite_passes_on_live_containers(baked_defaults):
    result = run_in(baked_defaults, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/security",
                    timeout=1500)
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_compose_demo_runs_a_task_and_refuses_attacks(baked_defaults):
    result = run_in(baked_defaults, sys.executable, "-m", "tools.stack", "demo", "--down", timeout=1500)
    output = result.stdout + result.stderr
    print(output[-4000:])
    assert result.returncode == 0, output[-6000:]
    assert "add(2, 3) = 5" in output
    assert "refused by the producer: invalid arguments for task" in output and "x: Input should be a valid integer" in output
    assert "refused by the worker:" in output
    assert "canary /tmp/pwned in the worker: absent" in output


def test_password_management_and_egress_variant_passes_its_security_suite(tmp_path_factory):
    # The non-default options in one live run (each changes what the suite checks: password login, no metrics
    # listener, port 15671 HTTPS only, workers with a route out, a Flower dashboard per tenant, error reports to a
    # Sentry, the result store). Same slug as the defaults on purpose: the offline stand-in images are reused.
    project = bake(tmp_path_factory.mktemp("live-variant"), broker_login="password", management_ui="https",
                   worker_egress="allowed", broker_metrics="off", flower="https", error_reports="sentry",
                   result_backend="redis")
    result = run_in(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/security",
                    timeout=1500)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
    assert {"MON-02", "MON-03", "LOG-03", "RES-01", "RES-02", "RES-03"} <= {control["id"] for control in json.loads(
        (project / "reports" / "compliance.json").read_text())["controls"] if control["status"] == "pass"}
    # Password login leaves one control a documented gap, shown as such: a certificate may carry another identity's
    # password (the attack is tried, and works, as the README says). Every other control passes.
    report = json.loads((project / "reports" / "compliance.json").read_text())
    statuses = {control["id"]: control["status"] for control in report["controls"]}
    assert statuses.pop("CRED-07") == "gap (documented)"
    assert set(statuses.values()) == {"pass"}, statuses
    # The weakenings that exist only with password login, the dashboard or the error reports, each run once here (the default bake's
    # weakened runs, tests/test_weakened.py, cannot): their controls' own test module, under the weakening, must fail.
    tests_of = baked_tests_of(project)
    for name, failing in variant_only_weakenings().items():
        modules = security_modules(tests_of, failing)
        assert modules, f"{name}: no security test names {sorted(failing)}"
        weakened = run_in(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules,
                          timeout=900, SECURITY_SUITE_WEAKEN=name, TEST_STACK_LABEL=name)
        print(weakened.stdout[-1500:])
        report = json.loads((project / "reports" / "compliance.json").read_text())
        assert weakened.returncode == 1, f"{name}: the suite passed\n{weakened.stdout[-3000:]}"
        assert {control["id"] for control in report["controls"] if control["status"] == "FAIL"} == failing


def test_a_tenant_added_in_one_command_runs_tasks_without_a_broker_restart(tmp_path_factory):
    """The README's tenant change on a running stack: `tools.tenants add`, the printed steps (reconcile, the new worker
    up), a task through the new tenant's producer; then `remove` and its steps: its users are gone from the broker.
    The broker is never restarted (its start time is unchanged)."""
    project = bake(tmp_path_factory.mktemp("live-tenants"))
    compose = ("docker-compose",)

    def step(*command, expect=0, timeout=600):
        result = run_in(project, *command, timeout=timeout)
        output = result.stdout + result.stderr
        print(f"$ {' '.join(command)}\n{output[-1500:]}")
        assert result.returncode == expect, output[-4000:]
        return output

    try:
        step(sys.executable, "-m", "tools.stack", "up", timeout=1200)
        started = step("docker", "inspect", "-f", "{{.State.StartedAt}}", "hardened-tasks-broker-1")
        step(sys.executable, "-m", "tools.tenants", "add", "support")
        step(*compose, "exec", "-T", "broker", "broker-boot", "reconcile")
        step(*compose, "up", "-d", "--wait", "worker-support")
        output = step(*compose, "--profile", "tools", "run", "--rm", "--no-deps", "producer-support")
        assert "add(2, 3) = 5" in output and "refused by the worker:" in output
        step(sys.executable, "-m", "tools.tenants", "remove", "support")
        step(*compose, "up", "-d", "--wait", "--remove-orphans")
        output = step(*compose, "exec", "-T", "broker", "broker-boot", "reconcile")
        assert all(f"removed: delete_user support-{role}" in output for role in ("worker", "producer", "auditor"))
        users = step(*compose, "exec", "-T", "broker", "rabbitmqctl", "-q", "list_users")
        assert "support-" not in users and "billing-worker" in users
        assert step("docker", "inspect", "-f", "{{.State.StartedAt}}", "hardened-tasks-broker-1") == started
    finally:
        run_in(project, sys.executable, "-m", "tools.stack", "down", timeout=300)
