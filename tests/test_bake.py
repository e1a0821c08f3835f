"""Bake the defaults and several variants; every baked project is complete, private and audit-clean, and passes
its own static checks (unit tests, compose.yaml checks, controls catalog)."""
import json
import os
import re
import stat
import struct
import tomllib

import pytest

from tests.support.bake import bake, run_in

VARIANTS = {
    "defaults": {},
    "one-vhost": {"vhosts": "solo"},
    "three-vhosts-redis": {"vhosts": "alpha,beta-2,gamma", "result_backend": "redis"},
    "management-https-flower": {"management_ui": "https", "flower": "https"},
    "password-login": {"broker_login": "password", "broker_metrics": "off"},
    "no-results": {"result_backend": "none"},
    "egress-allowed-sentry": {"worker_egress": "allowed", "error_reports": "sentry"},
    "unusual-names": {"project_name": "Zürich Payments Ops", "project_slug": "zh-pay-2",
                      "package_name": "zh_pay2", "broker_host": "mq.internal.example", "worker_uid": "4242",
                      "worker_gid": "4343", "vhosts": "t1,tenant-with-long-name"},
}
UNRENDERED = re.compile(r"\{\{|\{%|\bcookiecutter\.(project|package|vhosts|worker|broker|management|flower|error|result|python|rabbitmq|_)")


@pytest.fixture(scope="module", params=list(VARIANTS))
def baked(request, tmp_path_factory):
    output = tmp_path_factory.mktemp(request.param)
    return bake(output, **VARIANTS[request.param]), VARIANTS[request.param], output


def text_files(project):
    for path in project.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc",):
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def test_no_unrendered_jinja(baked):
    project, _, _ = baked
    leftovers = [str(path.relative_to(project)) for path, text in text_files(project) if UNRENDERED.search(text)]
    assert leftovers == []


def acl_readers(path) -> set[int]:
    """Named users of a file's POSIX ACL (Linux xattr encoding: a 4-byte header, then 8-byte tag/perm/id entries)."""
    try:
        blob = os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return set()
    return {uid for tag, _, uid in struct.iter_unpack("<HHI", blob[4:]) if tag == 0x02}


def test_keys_and_passwords_are_private_but_readable_by_their_container_user(baked):
    """Owned by the baker, 0600, plus one ACL read grant for the container user that mounts the file."""
    project, answers, _ = baked
    uid = int(answers.get("worker_uid", 10001))
    vhosts = answers.get("vhosts", "billing,analytics").split(",")
    readers = {"pki/broker.key": {999}, "pki/issuing-ca.key": set(), "pki-root/ca.key": set(),
               "pki-root/passphrase": set(), "secrets/definitions.json": {999}}
    if answers.get("broker_metrics", "tls") == "tls":
        readers["pki/monitoring.key"] = set()      # the metrics scraper's: no container of the stack mounts it
    for vhost in vhosts:
        # One key per identity, readable by the one container that is that identity (auditors are people).
        for role, reader in (("worker", {uid}), ("producer", {uid}), ("auditor", set())):
            readers |= {f"pki/{vhost}-{role}.key": reader}
            if answers.get("broker_login") == "password":       # certificate login (the default) has no passwords
                readers |= {f"secrets/{vhost}-{role}.password": reader}
        if answers.get("flower") == "https":   # its monitor identity, its HTTPS key and login: its container alone
            readers |= {f"pki/{vhost}-monitor.key": {uid}, f"pki/dashboard-{vhost}.key": {uid},
                        f"secrets/dashboard-{vhost}.password": {uid},
                        **({f"secrets/{vhost}-monitor.password": {uid}} if answers.get("broker_login") == "password"
                           else {})}
    if answers.get("error_reports") == "sentry":   # the Sentry DSN and CA: every worker mounts them
        readers |= {"secrets/error-reports.dsn": {uid}, "secrets/error-reports-ca.pem": {uid}}
    if answers.get("result_backend") == "redis":   # the store's key and users (uid 999); each login its identity's
        readers |= {"pki/results.key": {999}, "secrets/results-users.acl": {999},
                    **{f"secrets/results-{vhost}-{role}.password": {uid} for vhost in vhosts
                       for role in ("worker", "producer")}}
    found = {str(p.relative_to(project)) for p in [*(project / "pki").glob("*.key"), *(project / "pki-root").iterdir(),
                                                   *(project / "secrets").iterdir()]}
    assert found == set(readers)
    for name, expected in readers.items():
        path = project / name
        assert acl_readers(path) == expected, name
        assert stat.S_IMODE(path.stat().st_mode) == (0o640 if expected else 0o600), name   # group bits = ACL mask


def test_replay_file_holds_no_secret(baked):
    project, _, output = baked
    replay = "\n".join(path.read_text() for path in (output / "replay").rglob("*.json"))
    assert replay, "cookiecutter wrote no replay file"
    for password_file in (project / "secrets").glob("*.password"):
        assert json.loads(password_file.read_text())["password"] not in replay
    assert "PRIVATE KEY" not in replay and "password_hash" not in replay


def test_definitions_cover_every_vhost(baked):
    project, answers, _ = baked
    definitions = json.loads((project / "secrets" / "definitions.json").read_text())
    vhosts = answers.get("vhosts", "billing,analytics").split(",")
    assert [v["name"] for v in definitions["vhosts"]] == vhosts
    assert {q["name"] for q in definitions["queues"] if q["vhost"] == vhosts[0]} == {"tasks", "priority",
                                                                                     "dead-letters"}


def test_bandit_reports_nothing(baked):
    project, _, _ = baked
    result = run_in(project, "bandit", "-q", "-r", ".", "-c", "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_and_mypy_report_nothing(baked):
    """The baked project's own lint and type-check configuration (pyproject.toml), on every variant: zero findings,
    so that a finding in a user's change stands out and every `noqa` still suppresses something (RUF100)."""
    project, _, _ = baked
    for command in (("ruff", "check", "--no-cache", "."), ("mypy", "--cache-dir", "/dev/null")):
        result = run_in(project, *command, timeout=600)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


def test_stack_toml_matches_the_answers(baked):
    project, answers, _ = baked
    stack = tomllib.loads((project / "stack.toml").read_text())
    assert stack["workers"]["vhosts"] == answers.get("vhosts", "billing,analytics").split(",")
    assert stack["broker"]["management"] == answers.get("management_ui", "off")
    assert stack["broker"]["login"] == answers.get("broker_login", "certificate")
    assert stack["broker"]["metrics"] == answers.get("broker_metrics", "tls")
    assert (project / "monitoring" / "alerts.yml").exists() == (stack["broker"]["metrics"] == "tls")
    assert stack["monitoring"]["flower"] == answers.get("flower", "off")
    dashboard = stack["monitoring"]["flower"] == "https"
    package = project / "src" / project.name.replace("-", "_") if "package_name" not in answers else \
        project / "src" / answers["package_name"]
    assert (package / "dashboard.py").exists() == dashboard
    assert (project / "requirements" / "dashboard.lock").exists() == dashboard
    vhosts = stack["workers"]["vhosts"]
    assert {path.name for path in (project / "pki").glob("dashboard-*.crt")} == \
        ({f"dashboard-{vhost}.crt" for vhost in vhosts} if dashboard else set())
    assert {path.name for path in (project / "secrets").glob("dashboard-*.password")} == \
        ({f"dashboard-{vhost}.password" for vhost in vhosts} if dashboard else set())
    # error_reports = sentry: its code, its pins and two empty secret files (the DSN and a CA) for the operator to fill.
    sentry = answers.get("error_reports", "off") == "sentry"
    assert stack["monitoring"]["error_reports"] == answers.get("error_reports", "off")
    assert (package / "error_reports.py").exists() == sentry
    assert ("sentry-sdk==" in (project / "requirements" / "worker.lock").read_text()) == sentry
    reports = [project / "secrets" / name for name in ("error-reports.dsn", "error-reports-ca.pem")]
    assert [path.exists() and path.read_text() == "" for path in reports] == [sentry, sentry]
    # result_backend = redis: the store's image, configuration, client code and pin, and its certificate.
    redis = answers.get("result_backend", "rpc") == "redis"
    assert stack["results"]["backend"] == answers.get("result_backend", "rpc")
    assert [(package / "result_store.py").exists(), (project / "results" / "redis.conf").exists(),
            (project / "docker" / "results" / "Dockerfile").exists(), (project / "pki" / "results.crt").exists(),
            "redis==" in (project / "requirements" / "worker.lock").read_text()] == [redis] * 5


def test_baked_unit_and_static_tests_pass(baked):
    project, _, _ = baked
    # A light fuzzing budget per variant; tests/test_live.py runs the full one on the defaults. The compose.yaml
    # checks and the catalog check need no engine.
    result = run_in(project, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit", "tls/tests",
                    "tests/security/test_compose_file.py", "tests/security/test_catalog.py", FUZZ_EXAMPLES="25")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
