"""The security suite can fail: with one control switched off, exactly that control's tests fail and every other
control tested beside them still passes.

Each run runs the security modules that hold the weakened controls' tests (a module covers a family: test_tls.py
all of TLS-01..08, test_credentials.py CRED-01..07), not the whole suite: that keeps the runs inside CI's time
budget. WEAKENED_FULL_SUITE=1 runs the whole suite every time, so that no other control in any module may fail.

The weakenings are the baked project's own (tests/security/weakenings.py), of two kinds: an override of the
shipped files, selected with SECURITY_SUITE_WEAKEN, and an edit of a shipped file itself, which this test makes to a
copy of the baked project, as a user would, before running that copy's suite unchanged. Which weakenings there
are, and which controls each must fail, is the catalog's (policies/controls.toml, each control's `weakened_by`).

Every run has its own copy of the baked project (its reports, its edited compose.yaml) and its own compose project
(TEST_STACK_LABEL), so that two run at once: a run mostly waits (the broker's boot, the broker's delay of about
3 s before each refused login), and two at a time take about 60 % of the time of one after another on the 2-core
CI machine.
"""
import json
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.bake import bake, run_in
from tests.support.catalog import (
    baked_tests_of,
    default_bake_weakenings,
    security_modules,
)

pytestmark = pytest.mark.live
CONCURRENT_RUNS = 2
# Set to 1 to run the whole suite in every weakened run (about 15 min more on the CI machine).
FULL_SUITE = "WEAKENED_FULL_SUITE"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("weakened"))


@pytest.fixture(scope="module")
def tables(project) -> dict:
    """The baked project's own tables, as rendered for it: the controls each weakening must fail (derived from the
    catalog), the edits of shipped files, and the security test modules that hold those controls' tests."""
    result = run_in(project, sys.executable, "-c", "import json; from tests.security.weakenings import "
                    "EXPECTED_FAILURES as x, PROJECT_EDITS as e; print(json.dumps({'expected': {k: sorted(v) for k, v "
                    "in x.items()}, 'edits': e}))")
    assert result.returncode == 0, result.stderr
    tables = json.loads(result.stdout)
    tests_of = baked_tests_of(project)
    tables["modules"] = {name: security_modules(tests_of, controls) for name, controls in tables["expected"].items()}
    return tables


@dataclass
class Run:
    failing: list[str]      # the controls the weakened suite reported failing
    report: dict            # its reports/compliance.json
    tail: str               # the end of its output


def copy_of(project: Path, parent: Path) -> Path:
    copy = parent / project.name
    shutil.copytree(project, copy, symlinks=True, ignore=shutil.ignore_patterns("reports", "__pycache__"))
    return copy


def edit_files(project: Path, edits: list[tuple[str, str, str]]) -> None:
    for name, pattern, replacement in edits:
        path = project / name
        text = path.read_text()
        edited = re.sub(pattern, replacement, text)
        assert edited != text, f"{pattern!r} no longer matches {name}"
        path.write_text(edited)


def run_suite(project: Path, label: str, modules: list[str], **env) -> Run:
    """Run the security suite's `modules` (the whole suite with WEAKENED_FULL_SUITE=1) under its own compose project;
    the failing controls, the report and the output's tail."""
    # An empty list would let pytest fall back to its testpaths (the whole project): a weakening must name controls
    # with tests in the security suite.
    assert modules, f"{label}: its controls have no test in tests/security"
    paths = ["tests/security"] if os.environ.get(FULL_SUITE) == "1" else modules
    result = run_in(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths,
                    timeout=1800, TEST_STACK_LABEL=label, **env)
    report = json.loads((project / "reports" / "compliance.json").read_text())
    failing = sorted(control["id"] for control in report["controls"] if control["status"] == "FAIL")
    assert result.returncode == 1, f"the suite passed against a weakened stack:\n{result.stdout[-2000:]}"
    # Every other control whose tests ran passes (those in modules not run are "not run").
    assert all(control["status"] in ("pass", "not run") for control in report["controls"]
               if control["id"] not in failing)
    return Run(failing, report, result.stdout[-1500:])


def selected(request, parameter: str) -> list[str]:
    """The values of `parameter` among this module's collected tests (all, unless the run was narrowed with -k)."""
    values = (getattr(item, "callspec", None) for item in request.session.items if item.module is request.module)
    return [callspec.params[parameter] for callspec in values if callspec and parameter in callspec.params]


@pytest.fixture(scope="module")
def runs(request, project, tables, tmp_path_factory) -> dict[str, Run | BaseException]:
    """Every selected weakened run, CONCURRENT_RUNS at a time: name -> its Run, or what went wrong (raised by its
    own test, so that one broken run does not hide the others)."""
    built = run_in(project, sys.executable, "-m", "tools.images", "build", timeout=1800)   # once, before the copies
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]

    def weakened_run(name: str) -> Run:
        copy = copy_of(project, tmp_path_factory.mktemp(name))
        if name in tables["edits"]:
            edit_files(copy, tables["edits"][name])
            return run_suite(copy, name, tables["modules"][name])
        return run_suite(copy, name, tables["modules"][name], SECURITY_SUITE_WEAKEN=name)

    with ThreadPoolExecutor(CONCURRENT_RUNS) as pool:
        futures = {name: pool.submit(weakened_run, name) for name in selected(request, "weakening")}
    return {name: future.exception() or future.result() for name, future in futures.items()}


def outcome(runs: dict, name: str) -> Run:
    run = runs[name]
    if isinstance(run, BaseException):
        raise run
    print(f"{name}: failing controls {run.failing}\n{run.tail}")
    return run


@pytest.mark.parametrize("weakening", list(default_bake_weakenings()))
def test_a_weakening_fails_exactly_the_controls_that_name_it(runs, tables, weakening):
    run = outcome(runs, weakening)
    assert run.report["weakening"] == (None if weakening in tables["edits"] else weakening)
    assert run.failing == tables["expected"][weakening]
