"""The controls catalog as the template's own tests read it (the baked project reads it with tools/catalog.py)."""
import json
import sys
import tomllib
from pathlib import Path

from tests.support.bake import REPO_ROOT, run_in

CATALOG = REPO_ROOT / "policies" / "controls.toml"


def controls() -> list[dict]:
    return tomllib.loads(CATALOG.read_text())["control"]


def default_bake_weakenings() -> dict[str, set[str]]:
    """weakening -> the controls that must fail under it, for a default bake (certificate login), in the catalog's
    order of first mention."""
    expected: dict[str, set[str]] = {}
    for control in controls():
        for name in [*control.get("weakened_by", []), *control.get("weakened_by_certificate_login", [])]:
            expected.setdefault(name, set()).add(control["id"])
    return expected


def variant_only_weakenings() -> dict[str, set[str]]:
    """weakening -> controls, for the weakenings that exist only in the live variant's bake (password login, the
    Flower dashboard, the error reports, the result store): not run by the default bake's weakened runs; the
    variant's live test runs them."""
    default = default_bake_weakenings()
    expected: dict[str, set[str]] = {}
    for control in controls():
        for name in [*control.get("weakened_by_password_login", []), *control.get("weakened_by_flower", []),
                     *control.get("weakened_by_sentry", []), *control.get("weakened_by_redis", [])]:
            if name not in default:
                expected.setdefault(name, set()).add(control["id"])
    return expected


def baked_tests_of(project: Path) -> dict[str, list[str]]:
    """control id -> the test files (relative to tests/) whose markers name it, as the baked project's own catalog
    tooling reads them (tools.catalog.tests_of)."""
    result = run_in(project, sys.executable, "-c", "import json; from tools.catalog import tests_of; "
                    "print(json.dumps(tests_of()))")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def security_modules(tests_of: dict[str, list[str]], controls) -> list[str]:
    """The baked security suite's modules (tests/security/...) with a test for any of `controls`."""
    return sorted({f"tests/{path}" for control in controls for path in tests_of.get(control, [])
                   if path.startswith("security/")})
