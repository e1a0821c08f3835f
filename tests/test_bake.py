"""Bake the defaults and several variants; every baked project is complete, private and audit-clean."""
import json
import re
import stat

import pytest
import yaml

from tests.support.bake import bake, run_in

VARIANTS = {
    "defaults": {},
    "one-vhost": {"vhosts": "solo"},
    "three-vhosts": {"vhosts": "alpha,beta-2,gamma"},
    "management-https": {"management_ui": "https"},
    "no-results": {"result_backend": "none"},
    "unusual-names": {"project_name": "Zürich Payments Ops", "project_slug": "zh-pay-2",
                      "package_name": "zh_pay2", "broker_host": "mq.internal.example", "worker_uid": "4242",
                      "worker_gid": "4343", "vhosts": "t1,tenant-with-long-name"},
}
UNRENDERED = re.compile(r"\{\{|\{%|\bcookiecutter\.(project|package|vhosts|worker|broker|management|result|python|rabbitmq|_)")


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


def test_one_worker_service_per_vhost_and_only_tls_published(baked):
    project, answers, _ = baked
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    vhosts = answers.get("vhosts", "billing,analytics").split(",")
    assert {f"worker-{v}" for v in vhosts} <= set(compose["services"])
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    expected = ["127.0.0.1:5671:5671"] + (["127.0.0.1:15671:15671"] if answers.get("management_ui") == "https" else [])
    assert published == expected
    for name, service in compose["services"].items():
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["user"] != "0" and not service["user"].startswith("0:"), name
        assert "mem_limit" in service and "pids_limit" in service, name
        assert "environment" not in service or not any("PASS" in key for key in service["environment"]), name


def test_private_keys_and_passwords_are_0600_for_their_container_user(baked):
    project, answers, _ = baked
    uid = int(answers.get("worker_uid", 10001))
    owners = {"broker.key": 999, "worker.key": uid, "producer.key": uid}
    for key in (project / "pki").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        if key.name in owners:
            assert key.stat().st_uid == owners[key.name], key
    for secret in (project / "secrets").iterdir():
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret


def test_replay_file_holds_no_secret(baked):
    project, _, output = baked
    replay = "\n".join(path.read_text() for path in (output / "replay").rglob("*.json"))
    assert replay, "cookiecutter wrote no replay file"
    for password_file in (project / "secrets").glob("*.password"):
        assert password_file.read_text().strip() not in replay
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


def test_baked_unit_tests_pass(baked):
    project, _, _ = baked
    # A light fuzzing budget per variant; tests/test_live.py runs the full one on the defaults.
    result = run_in(project, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit", "tls/tests",
                    FUZZ_EXAMPLES="25")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
