"""The dashboard's refusal lines (LOG-02) and its login file, without Flower (tests/security/test_dashboard.py runs
the real one): what reaches the container log for a refused request or handshake, and what never does."""
import json
import logging
from types import SimpleNamespace

import pytest

from {{ cookiecutter.package_name }} import dashboard


def audit_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def handler(status: int, path: str = "/api/tasks", query: str = "?search=canary-secret"):
    request = SimpleNamespace(method="GET", path=path, uri=path + query, remote_ip="192.0.2.7")
    return SimpleNamespace(get_status=lambda: status, request=request)


@pytest.mark.parametrize("status, event", [(401, "dashboard-login.refused"), (404, "dashboard-route.refused"),
                                           (405, "dashboard-route.refused"), (500, "dashboard-route.refused")])
def test_each_refused_request_is_one_audit_line_without_its_query(capsys, status, event):
    dashboard.log_request(handler(status))
    [line] = audit_lines(capsys)
    assert (line["event"], line["status"], line["path"], line["tenant"]) == (event, status, "/api/tasks", "unit")
    assert "canary-secret" not in json.dumps(line)


def test_a_served_request_leaves_no_line(capsys):
    dashboard.log_request(handler(200))
    assert audit_lines(capsys) == []


def record(message: str, *args) -> logging.LogRecord:
    return logging.LogRecord("tornado.general", logging.WARNING, __file__, 1, message, args, None)


def test_tornado_lines_become_audit_lines_or_go(capsys):
    lines = dashboard.TornadoLines()
    handshake = record("SSL Error on %s %s: %s", 9, ("192.0.2.7", 51000), "[SSL: HTTP_REQUEST] http request")
    uri = record("%d %s: " + "Unknown worker", 404, "GET /api/tasks?search=canary-secret (192.0.2.7)")
    other = record("Something else: %s", "kept")
    assert [lines.filter(handshake), lines.filter(uri), lines.filter(other)] == [False, False, True]
    [line] = audit_lines(capsys)
    assert (line["event"], line["client"], line["detail"]) == \
        ("dashboard-tls.refused", "192.0.2.7", "[SSL: HTTP_REQUEST] http request")


def test_an_unreadable_login_file_stops_the_start_with_a_reason(tmp_path):
    broken = tmp_path / "dashboard_login"
    broken.write_text("operator:password\n")          # not the JSON credentials/generate write
    with pytest.raises(SystemExit, match="the dashboard login .* is unreadable"):
        dashboard.read_login(broken)
    broken.write_text(json.dumps({"user": "operator", "password": "p"}))
    assert dashboard.read_login(broken) == ("operator", "p")
