"""The controls catalog, the tests and the weakenings agree: every control has a test and a weakening that makes
that test fail, every test and every weakening names a known control, and the README's table is the catalog's."""
import re

from tests.harness.scratch import broker_config_swapped
from tests.security.weakenings import CONFIG_SWAPS, IMPLEMENTED, METRICS_SWAPS, STACK
from tools import catalog, settings

CATALOG = catalog.load(STACK.project_dir)


def test_every_control_has_a_test():
    missing = sorted(set(CATALOG) - set(catalog.tests_of(STACK.project_dir)))
    assert missing == [], f"controls with no test: {missing}"


def test_every_test_names_a_known_control():
    unknown = sorted(set(catalog.tests_of(STACK.project_dir)) - set(CATALOG))
    assert unknown == [], f"tests name unknown controls: {unknown}"


def test_catalog_entries_are_complete():
    for control_id, control in CATALOG.items():
        assert re.fullmatch(r"[A-Z]+-\d{2}", control_id)
        assert control["title"] and control["threat"] and control["configured_in"] and control["references"]


def test_every_control_is_weakened_or_says_why_not():
    """A control nothing can switch off in the weakened runs has never been seen failing; the few that cannot be
    (the change would be a different image) say why in the catalog."""
    other_login = next(login for login in settings.LOGINS if login != STACK.login)
    # A control weakened only under the other login is a documented gap under this one (CRED-07 with passwords).
    unproven = [control_id for control_id, control in CATALOG.items()
                if not catalog.weakenings_of(control, STACK.login, STACK.features) and not control.get("not_weakened")
                and not control.get(f"weakened_by_{other_login}_login")]
    assert unproven == [], f"controls with no weakening and no `not_weakened` reason: {unproven}"


def test_every_declared_weakening_is_implemented_and_every_implemented_one_declared():
    declared = set(catalog.expected_failures(STACK.login, STACK.project_dir, STACK.features))
    # A weakening of the other login only (singleslot: password rotation) or of an optional part (the dashboard, the
    # error reports) is implemented in every bake.
    either = {name for login in settings.LOGINS
              for name in catalog.expected_failures(login, STACK.project_dir, frozenset(settings.FEATURES))}
    assert sorted(declared - IMPLEMENTED) == [], "named in the catalog's weakened_by, not in tests/security/weakenings.py"
    assert sorted(IMPLEMENTED - either) == [], "in tests/security/weakenings.py, named by no control's weakened_by"


def test_every_line_a_weakening_swaps_is_in_the_shipped_files_exactly_once():
    """A swap whose line is gone or doubled (a second listener's block written alike) would only fail in the
    weakened run itself; found here, with no engine. The metrics swaps need a bake that serves metrics."""
    for name, files in CONFIG_SWAPS.items():
        if name in METRICS_SWAPS and STACK.metrics != "tls":
            continue
        for file, swaps in files.items():
            broker_config_swapped(STACK.project_dir, swaps, file)      # raises naming the line


def test_the_readmes_controls_table_is_the_catalog():
    readme = (STACK.project_dir / catalog.README).read_text()
    assert readme == catalog.readme_with_table(STACK), "README.md's controls table is stale: python -m tools.catalog readme"
