"""The security suite can fail: with one control switched off, exactly that control's tests fail and every other
control still passes.

The weakenings are the baked project's own (tests/security/weakenings.py), of two kinds: an override of the
shipped files, selected with SECURITY_SUITE_WEAKEN, and an edit of compose.yaml itself, which this test makes to a
copy of the baked project, as a user would, before running that copy's suite unchanged.
"""
import ast
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.bake import REPO_ROOT, bake, run_in

pytestmark = pytest.mark.live
WEAKENINGS = REPO_ROOT / "template" / "{{cookiecutter.project_slug}}" / "tests" / "security" / "weakenings.py"


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


def run_suite(project: Path, **env) -> tuple[list[str], dict, str]:
    """Run the security suite; return the failing controls, the compliance report and the output's tail."""
    result = run_in(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/security",
                    timeout=1200, **env)
    report = json.loads((project / "reports" / "compliance.json").read_text())
    failing = sorted(control["id"] for control in report["controls"] if control["status"] == "FAIL")
    assert result.returncode == 1, f"the suite passed against a weakened stack:\n{result.stdout[-2000:]}"
    assert all(control["status"] == "pass" for control in report["controls"] if control["id"] not in failing)
    return failing, report, result.stdout[-1500:]


@pytest.mark.parametrize("weakening", table_names("EXPECTED_FAILURES"))
def test_an_override_fails_exactly_its_controls(project, tables, weakening):
    failing, report, tail = run_suite(project, SECURITY_SUITE_WEAKEN=weakening)
    print(f"{weakening}: failing controls {failing}\n{tail}")
    assert report["weakening"] == weakening
    assert failing == tables["overrides"][weakening]


@pytest.mark.parametrize("edit", table_names("COMPOSE_EDITS"))
def test_an_edited_compose_yaml_fails_exactly_its_controls(project, tables, edit, tmp_path):
    copy = tmp_path / project.name
    shutil.copytree(project, copy, symlinks=True, ignore=shutil.ignore_patterns("reports", "__pycache__"))
    compose = copy / "compose.yaml"
    text = compose.read_text()
    expected, substitutions = tables["edits"][edit]
    for pattern, replacement in substitutions:
        edited = re.sub(pattern, replacement, text)
        assert edited != text, f"{edit}: {pattern!r} no longer matches compose.yaml"
        text = edited
    compose.write_text(text)
    failing, _, tail = run_suite(copy)
    print(f"{edit}: failing controls {failing}\n{tail}")
    assert failing == expected
