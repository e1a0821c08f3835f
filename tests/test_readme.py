"""The README's security tables say what the catalog says: a control added, renamed or given a weakening shows up
here as a failing line, not as a README that quietly drifted. (The baked README's table is generated from the
catalog; the baked project's tests/security/test_catalog.py checks it.)"""
import ast
import re

from tests.support.bake import REPO_ROOT
from tests.support.catalog import controls, default_bake_weakenings, variant_only_weakenings

WEAKENINGS = REPO_ROOT / "template" / "{{cookiecutter.project_slug}}" / "tests" / "security" / "weakenings.py"
# "TLS-01", and the short forms the tables use: "RUN-01..04" (a range), "VAL-01/02" (a list).
CONTROL = re.compile(r"\b([A-Z]+)-(\d{2})((?:(?:\.\.|/)\d{2})*)")


def catalog_ids() -> set[str]:
    return {control["id"] for control in controls()}


def control_ids(text: str) -> set[str]:
    found = set()
    for prefix, first, more in CONTROL.findall(text):
        numbers = [int(first)]
        for separator, number in re.findall(r"(\.\.|/)(\d{2})", more):
            numbers += list(range(numbers[-1] + 1, int(number) + 1)) if separator == ".." else [int(number)]
        found |= {f"{prefix}-{number:02d}" for number in numbers}
    return found


def table_after(readme: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with `header`, as lists of cells."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def project_edits() -> set[str]:
    """The names of weakenings.py's PROJECT_EDITS (read from its syntax tree: the module is a template, valid Python
    with Jinja only inside strings)."""
    for node in ast.parse(WEAKENINGS.read_text()).body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and getattr(getattr(node, "target", None) or node.targets[0],
                                                                     "id", None) == "PROJECT_EDITS":
            return {key.value for key in node.value.keys}
    raise LookupError(f"{WEAKENINGS} defines no PROJECT_EDITS")


def test_the_readmes_threat_table_names_every_control_and_no_other():
    top = table_after((REPO_ROOT / "README.md").read_text(), "| Threat | Control | Test that tries the attack")
    assert control_ids(" ".join(row[1] for row in top)) == catalog_ids()


def test_the_readmes_weakening_tables_are_the_catalogs():
    readme = (REPO_ROOT / "README.md").read_text()
    overrides = {re.fullmatch(r"`([a-z-]+)`", row[0]).group(1): control_ids(row[2])
                 for row in table_after(readme, "| Weakening | What changes | Controls that must fail |")}
    edits = {re.match(r"`([a-z-]+)`", row[0]).group(1): control_ids(row[1])
             for row in table_after(readme, "| Edit of a shipped file | Controls that must fail |")}
    assert {**overrides, **edits} == default_bake_weakenings() | variant_only_weakenings()
    assert set(edits) == project_edits()
