"""The READMEs' security tables say what the catalog and the weakenings say: a control added, renamed or given
a weakening shows up here as a failing line, not as a README that quietly drifted."""
import ast
import re
import tomllib

from tests.support.bake import REPO_ROOT

CATALOG = REPO_ROOT / "policies" / "controls.toml"
TEMPLATE_README = REPO_ROOT / "template" / "{{cookiecutter.project_slug}}" / "README.md"
WEAKENINGS = REPO_ROOT / "template" / "{{cookiecutter.project_slug}}" / "tests" / "security" / "weakenings.py"
# "TLS-01", and the short forms the tables use: "RUN-01..04" (a range), "VAL-01/02" (a list).
CONTROL = re.compile(r"\b([A-Z]+)-(\d{2})((?:(?:\.\.|/)\d{2})*)")


def catalog_ids() -> set[str]:
    return {control["id"] for control in tomllib.loads(CATALOG.read_text())["control"]}


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


class DefaultLogin(ast.NodeTransformer):
    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        assert isinstance(node.test, ast.Name) and node.test.id == "CERTIFICATE_LOGIN", ast.unparse(node)
        return self.visit(node.body)


def weakening_tables() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(overrides, compose edits) of weakenings.py: name -> controls that must fail (read from its syntax tree;
    the module is a template, valid Python with Jinja only inside strings). An entry that depends on the bake's login
    (`a if CERTIFICATE_LOGIN else b`) is read for the default, certificate login, which the README describes."""
    tables = {}
    for node in ast.parse(WEAKENINGS.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in ("EXPECTED_FAILURES", "COMPOSE_EDITS"):
            value = ast.literal_eval(DefaultLogin().visit(node.value))
            tables[node.targets[0].id] = {name: set(entry[0] if isinstance(entry, tuple) else entry)
                                          for name, entry in value.items()}
    return tables["EXPECTED_FAILURES"], tables["COMPOSE_EDITS"]


def test_the_readmes_threat_tables_name_every_control_and_no_other():
    expected = catalog_ids()
    top = table_after((REPO_ROOT / "README.md").read_text(), "| Threat | Control | Test that tries the attack")
    baked = table_after(TEMPLATE_README.read_text(), "| Threat | Control | Configured in | Proven by |")
    assert control_ids(" ".join(row[1] for row in top)) == expected
    assert control_ids(" ".join(row[1] for row in baked)) == expected


def test_the_readmes_weakening_tables_are_the_weakenings_module():
    overrides, edits = weakening_tables()
    readme = (REPO_ROOT / "README.md").read_text()
    listed = {re.fullmatch(r"`([a-z-]+)`", row[0]).group(1): control_ids(row[2])
              for row in table_after(readme, "| Weakening | What changes | Controls that must fail |")}
    assert listed == overrides
    listed = {re.match(r"`([a-z-]+)`", row[0]).group(1): control_ids(row[1])
              for row in table_after(readme, "| Edit of compose.yaml | Controls that must fail |")}
    assert listed == edits
