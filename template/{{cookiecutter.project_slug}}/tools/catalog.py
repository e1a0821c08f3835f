"""The controls catalog, policies/controls.toml, read in one place, and what is derived from it.

Each control declares its tests (their `controls` markers name it) and the weakenings that must make those tests
fail (`weakened_by`, plus `weakened_by_<login>_login` where the bake's login changes the outcome, and
`weakened_by_<feature>` for an optional part's, which only a bake with it has: `flower` for the dashboard's,
`sentry` for the error reports'; settings.FEATURES). Derived here:

* the weakened-run expectations, weakening -> the controls that must fail (tests/security/weakenings.py);
* the README's security table, between the markers below:

    python -m tools.catalog readme    # rewrite the table from the catalog and the tests' markers
    python -m tools.catalog check     # exit 1 if the README's table is not what the catalog says
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

from tools import settings

CATALOG = Path("policies") / "controls.toml"
README = Path("README.md")
TESTS = Path("tests")
BEGIN = "<!-- >>> controls table: generated from policies/controls.toml by `python -m tools.catalog readme` -->"
END = "<!-- <<< controls table -->"
# @pytest.mark.controls("TLS-01", ...) or its alias @controls(...)
MARKER = re.compile(r"controls\(((?:\s*\"[A-Z]+-\d+\"\s*,?)+)\)")


class CatalogError(ValueError):
    """The catalog or the README disagrees with what derives from it; the message says what to do."""


def load(project_dir: Path = settings.PROJECT_DIR) -> dict[str, dict]:
    """id -> control, in the catalog's order."""
    return {control["id"]: control for control in tomllib.loads((project_dir / CATALOG).read_text())["control"]}


def weakenings_of(control: dict, login: str, features: frozenset[str] = frozenset()) -> list[str]:
    return [*control.get("weakened_by", []), *control.get(f"weakened_by_{login}_login", []),
            *(name for feature in settings.FEATURES if feature in features
              for name in control.get(f"weakened_by_{feature}", []))]


def expected_failures(login: str, project_dir: Path = settings.PROJECT_DIR,
                      features: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """weakening -> the controls whose tests must fail under it, for a bake with this login (and these features)."""
    expected: dict[str, set[str]] = {}
    for control_id, control in load(project_dir).items():
        for weakening in weakenings_of(control, login, features):
            expected.setdefault(weakening, set()).add(control_id)
    return expected


def tests_of(project_dir: Path = settings.PROJECT_DIR) -> dict[str, list[str]]:
    """control id -> the test files (relative to tests/) whose markers name it."""
    found: dict[str, set[str]] = {}
    for path in (project_dir / TESTS).rglob("test_*.py"):
        for match in MARKER.finditer(path.read_text()):
            for control_id in re.findall(r"\"([A-Z]+-\d+)\"", match.group(1)):
                found.setdefault(control_id, set()).add(str(path.relative_to(project_dir / TESTS)))
    return {control_id: sorted(files) for control_id, files in found.items()}


def table(stack: settings.StackSettings) -> str:
    """The README's security table: one row per control."""
    tests = tests_of(stack.project_dir)
    rows = ["| Control | Threat | Configured in | Proven by | Weakened by (the suite then fails it) |",
            "|---|---|---|---|---|"]
    for control_id, control in load(stack.project_dir).items():
        weakened = ", ".join(f"`{name}`" for name in weakenings_of(control, stack.login, stack.features)) or \
            control.get("not_weakened", "none")
        configured_in = "; ".join(control["configured_in"]).replace("<package>", stack.package)
        cells = [f"**{control_id}** {control['title']}", control["threat"], configured_in,
                 ", ".join(f"`{name}`" for name in tests.get(control_id, [])) or "**no test**", weakened]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def readme_with_table(stack: settings.StackSettings) -> str:
    text = (stack.project_dir / README).read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise CatalogError(f"{README} must hold the controls table's markers once each:\n{BEGIN}\n{END}")
    before, rest = text.split(BEGIN)
    return f"{before}{BEGIN}\n{table(stack)}\n{END}{rest.split(END)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.catalog", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("readme", "check"))
    args = parser.parse_args(argv)
    stack = settings.load()
    try:
        wanted = readme_with_table(stack)
    except CatalogError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if args.command == "readme":
        (stack.project_dir / README).write_text(wanted)
        print(f"{README}: controls table rewritten from {CATALOG}")
        return 0
    if (stack.project_dir / README).read_text() != wanted:
        print(f"ERROR: {README}'s controls table is not what {CATALOG} says; run: python -m tools.catalog readme",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
