"""End to end on real containers: bake the defaults, run the baked project's live security suite and demo."""
import sys

import pytest

from tests.support.bake import bake, run_in

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


def test_management_and_egress_variant_passes_its_security_suite(tmp_path_factory):
    # Both non-default options in one live run (each changes what the suite checks: port 15671 HTTPS only,
    # workers with a route out). Same slug as the defaults on purpose: the offline stand-in images are reused.
    project = bake(tmp_path_factory.mktemp("live-variant"), management_ui="https", worker_egress="allowed")
    result = run_in(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/security",
                    timeout=1500)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
