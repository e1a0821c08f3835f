"""The controls catalog and the tests agree: every control has a test, every test names known controls."""
import re
from pathlib import Path

from tests.security.compliance import load_catalog

TESTS_DIR = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"controls\(((?:\s*\"[A-Z]+-\d+\"\s*,?)+)\)")


def referenced_controls() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in TESTS_DIR.rglob("test_*.py"):
        for match in MARKER.finditer(path.read_text()):
            for control in re.findall(r"\"([A-Z]+-\d+)\"", match.group(1)):
                found.setdefault(control, set()).add(str(path.relative_to(TESTS_DIR)))
    return found


def test_every_control_has_a_test():
    missing = sorted(set(load_catalog()) - set(referenced_controls()))
    assert missing == [], f"controls with no test: {missing}"


def test_every_test_names_a_known_control():
    unknown = sorted(set(referenced_controls()) - set(load_catalog()))
    assert unknown == [], f"tests name unknown controls: {unknown}"


def test_catalog_entries_are_complete():
    for control_id, control in load_catalog().items():
        assert re.fullmatch(r"[A-Z]+-\d{2}", control_id)
        assert control["title"] and control["threat"] and control["configured_in"] and control["references"]
