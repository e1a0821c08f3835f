"""The security suite can fail: against a stack with one control switched off, exactly that control's
tests fail and every other control still passes."""
import json
import sys

import pytest

from tests.support.bake import bake, run_in

pytestmark = pytest.mark.live
WEAKENINGS = ["plaintext", "oldtls", "nopeercert", "nohostcheck", "guest", "crosstenant", "fullperms", "envsecret",
              "pickle", "pickleproducer", "novalidation", "bigmessages", "root", "writable", "caps", "nolimits"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return bake(tmp_path_factory.mktemp("weakened"))


@pytest.fixture(scope="module")
def expected_failures(project) -> dict[str, list[str]]:
    result = run_in(project, sys.executable, "-c", "import json; from tests.security.weakenings import "
                    "EXPECTED_FAILURES as e; print(json.dumps({k: sorted(v) for k, v in e.items()}))")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("weakening", WEAKENINGS)
def test_only_the_weakened_controls_fail(project, expected_failures, weakening):
    result = run_in(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/security",
                    timeout=1200, SECURITY_SUITE_WEAKEN=weakening)
    report = json.loads((project / "reports" / "compliance.json").read_text())
    assert report["weakening"] == weakening
    failing = sorted(control["id"] for control in report["controls"] if control["status"] == "FAIL")
    print(f"{weakening}: failing controls {failing}\n{result.stdout[-1500:]}")
    assert result.returncode == 1, "the suite passed against a weakened stack"
    assert failing == expected_failures[weakening]
    assert all(control["status"] == "pass" for control in report["controls"] if control["id"] not in failing)
