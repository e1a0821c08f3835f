"""The security suite can fail: with one control switched off, exactly that control's tests fail and every other
control still passes.

The weakenings are the baked project's own (tests/security/weakenings.py), of two kinds: an override of the
shipped files, selected with SECURITY_SUITE_WEAKEN, and an edit of compose.yaml itself, which this test makes to a
copy of the baked project, as a user would, before running that copy's suite unchanged.

Every run has its own copy of the baked project (its reports, its edited compose.yaml) and its own compose project
(TEST_STACK_LABEL), so that two run at once: a run mostly waits (the broker's boot, the broker's delay of about
3 s before each refused login), and two at a time take about 60 % of the time of one after another on the 2-core
CI machine.
"""
import ast
import json
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.bake import REPO_ROOT, bake, run_in

pytestmark = pytest.mark.live
WEAKENINGS = REPO_ROOT / "template" / "{{cookiecutter.project_slug}}" / "tests" / "security" / "weakenings.py"
CONCURRENT_RUNS = 2


def table_names(table: str) -> list[str]:
    """The keys of a table in the weakenings module (its template is valid Python: Jinja only inside strings)."""
    for node in ast.parse(WEAKENINGS.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == table:
            return [key.value for key in node.value.keys]
    raise LookupError(f"{WEAKENINGS} defines no {table}")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("weakened"))


@pytest.fixture(scope="module")
def tables(project) -> dict:
    """The baked project's tables, as rendered for it: expected failures, and each compose.yaml edit."""
    result = run_in(project, sys.executable, "-c", "import json; from tests.security.weakenings import "
                    "EXPECTED_FAILURES as o, COMPOSE_EDITS as e; print(json.dumps({'overrides': {k: sorted(v) for k, v "
                    "in o.items()}, 'edits': {k: [sorted(f), s] for k, (f, s) in e.items()}}))")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclass
class Run:
    failing: list[str]      # the controls the weakened suite reported failing
    report: dict            # its reports/compliance.json
    tail: str               # the end of its output


def copy_of(project: Path, parent: Path) -> Path:
    copy = parent / project.name
    shutil.copytree(project, copy, symlinks=True, ignore=shutil.ignore_patterns("reports", "__pycache__"))
    return copy


def edit_compose(project: Path, substitutions: list[tuple[str, str]]) -> None:
    compose = project / "compose.yaml"
    text = compose.read_text()
    for pattern, replacement in substitutions:
        edited = re.sub(pattern, replacement, text)
        assert edited != text, f"{pattern!r} no longer matches compose.yaml"
        text = edited
    compose.write_text(text)


def run_suite(project: Path, label: str, **env) -> Run:
    """Run the security suite under its own compose project; the failing controls, the report and the output's tail."""
    result = run_in(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/security",
                    timeout=1800, TEST_STACK_LABEL=label, **env)
    report = json.loads((project / "reports" / "compliance.json").read_text())
    failing = sorted(control["id"] for control in report["controls"] if control["status"] == "FAIL")
    assert result.returncode == 1, f"the suite passed against a weakened stack:\n{result.stdout[-2000:]}"
    assert all(control["status"] == "pass" for control in report["controls"] if control["id"] not in failing)
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

    def override(name: str) -> Run:
        return run_suite(copy_of(project, tmp_path_factory.mktemp(name)), name, SECURITY_SUITE_WEAKEN=name)

    def edit(name: str) -> Run:
        copy = copy_of(project, tmp_path_factory.mktemp(name))
        edit_compose(copy, tables["edits"][name][1])
        return run_suite(copy, name)

    jobs = {**{name: override for name in selected(request, "weakening")},
            **{name: edit for name in selected(request, "edit")}}
    with ThreadPoolExecutor(CONCURRENT_RUNS) as pool:
        futures = {name: pool.submit(job, name) for name, job in jobs.items()}
    return {name: future.exception() or future.result() for name, future in futures.items()}


def outcome(runs: dict, name: str) -> Run:
    run = runs[name]
    if isinstance(run, BaseException):
        raise run
    print(f"{name}: failing controls {run.failing}\n{run.tail}")
    return run


@pytest.mark.parametrize("weakening", table_names("EXPECTED_FAILURES"))
def test_an_override_fails_exactly_its_controls(runs, tables, weakening):
    run = outcome(runs, weakening)
    assert run.report["weakening"] == weakening
    assert run.failing == tables["overrides"][weakening]


@pytest.mark.parametrize("edit", table_names("COMPOSE_EDITS"))
def test_an_edited_compose_yaml_fails_exactly_its_controls(runs, tables, edit):
    assert outcome(runs, edit).failing == tables["edits"][edit][0]
