"""The controls catalog as the template's own tests read it (the baked project reads it with tools/catalog.py)."""
import tomllib

from tests.support.bake import REPO_ROOT

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


def password_login_only_weakenings() -> dict[str, set[str]]:
    """weakening -> controls, for the weakenings that exist only for password-login bakes (not run by the default
    bake's weakened runs: the password variant's live test runs them)."""
    default = default_bake_weakenings()
    expected: dict[str, set[str]] = {}
    for control in controls():
        for name in control.get("weakened_by_password_login", []):
            if name not in default:
                expected.setdefault(name, set()).add(control["id"])
    return expected
