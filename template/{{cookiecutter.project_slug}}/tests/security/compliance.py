"""Compliance report: every control, every test that verifies it, the outcome and the evidence observed.

Written at the end of a security-suite run to reports/compliance.{md,json,junit.xml}.
"""
import json
import time
import xml.etree.ElementTree as ElementTree  # nosec B405 - used to *write* XML, never to parse it
from pathlib import Path

import pytest

from tools import catalog

PROJECT_DIR = Path(__file__).resolve().parents[2]
REPORT_DIR = PROJECT_DIR / "reports"


class ComplianceReport:
    """A pytest plugin object: collects outcomes per control, writes the report at session end."""

    def __init__(self, weakening: str | None):
        self.catalog = catalog.load(PROJECT_DIR)
        self.weakening = weakening
        self.results: dict[str, dict] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        marker = item.get_closest_marker("controls")
        if marker is None or (report.when != "call" and report.passed):
            return
        entry = self.results.setdefault(item.nodeid, {"test": item.nodeid, "controls": list(marker.args),
                                                      "outcome": "passed", "evidence": "", "seconds": 0.0})
        entry["seconds"] += report.duration
        if report.skipped and hasattr(report, "wasxfail"):
            # A strict xfail: the attack was tried and worked, as this bake's options document (a known gap).
            entry["outcome"] = "known gap"
            entry["evidence"] = f"the attack succeeds here: {report.wasxfail}"[:500]
        elif report.failed or report.skipped:
            entry["outcome"] = "failed" if report.failed else "skipped"
            entry["evidence"] = str(report.longrepr).splitlines()[-1][:500] if report.longrepr else ""
        for key, value in report.user_properties:
            if key == "evidence" and entry["outcome"] == "passed":
                entry["evidence"] = str(value)[:1000]

    def pytest_sessionfinish(self, session):
        if not self.results:
            return
        REPORT_DIR.mkdir(exist_ok=True)
        controls = []
        for control_id, control in self.catalog.items():
            tests = [r for r in self.results.values() if control_id in r["controls"]]
            outcomes = {t["outcome"] for t in tests}
            status = ("not run" if not tests else "pass" if outcomes == {"passed"} else
                      "gap (documented)" if outcomes <= {"passed", "known gap"} else "FAIL")
            controls.append({"id": control_id, "title": control["title"], "threat": control["threat"],
                             "status": status, "tests": tests})
        document = {"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "weakening": self.weakening, "controls": controls}
        (REPORT_DIR / "compliance.json").write_text(json.dumps(document, indent=2))
        (REPORT_DIR / "compliance.md").write_text(self.markdown(document))
        self.junit(document).write(REPORT_DIR / "compliance.junit.xml", encoding="utf-8", xml_declaration=True)

    @staticmethod
    def markdown(document: dict) -> str:
        lines = ["# Compliance report", "", f"Generated {document['generated']}"
                 + (f" against a stack WEAKENED with `{document['weakening']}`" if document["weakening"] else ""),
                 "", "| Control | Status | Tests (passed/total) | Threat |", "|---|---|---|---|"]
        for control in document["controls"]:
            passed = sum(t["outcome"] == "passed" for t in control["tests"])
            lines.append(f"| {control['id']} {control['title']} | {control['status']} | "
                         f"{passed}/{len(control['tests'])} | {control['threat']} |")
        lines += ["", "## Evidence", ""]
        for control in document["controls"]:
            lines.append(f"### {control['id']} {control['title']}")
            for test in control["tests"]:
                evidence = test["evidence"].replace("|", "\\|") or "(no evidence recorded)"
                lines.append(f"- **{test['outcome']}** `{test['test']}`: {evidence}")
            lines.append("")
        return "\n".join(lines)

    @staticmethod
    def junit(document: dict) -> ElementTree.ElementTree:
        suites = ElementTree.Element("testsuites", name="compliance")
        for control in document["controls"]:
            suite = ElementTree.SubElement(suites, "testsuite", name=f"{control['id']} {control['title']}",
                                           tests=str(len(control["tests"])),
                                           failures=str(sum(t["outcome"] == "failed" for t in control["tests"])))
            for test in control["tests"]:
                case = ElementTree.SubElement(suite, "testcase", classname=control["id"], name=test["test"],
                                              time=f"{test['seconds']:.3f}")
                properties = ElementTree.SubElement(case, "properties")
                ElementTree.SubElement(properties, "property", name="evidence", value=test["evidence"])
                if test["outcome"] == "failed":
                    ElementTree.SubElement(case, "failure", message=test["evidence"])
        return ElementTree.ElementTree(suites)
