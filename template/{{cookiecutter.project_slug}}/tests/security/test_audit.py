"""bandit reports nothing on the project's shipped code (AUD-01)."""
import json
import subprocess  # nosec B404
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.controls("AUD-01")
def test_bandit_finds_nothing(record_property):
    result = subprocess.run([sys.executable, "-m", "bandit", "-q", "-r", ".", "-c", "pyproject.toml", "-f", "json"],
                            cwd=PROJECT_DIR, capture_output=True, text=True, check=False)  # nosec B603
    report = json.loads(result.stdout)
    issues = [f"{i['filename']}:{i['line_number']} {i['test_id']} {i['issue_text']}" for i in report["results"]]
    record_property("evidence", f"{report['metrics']['_totals']['loc']} lines scanned, {len(issues)} issues")
    assert issues == [] and result.returncode == 0
