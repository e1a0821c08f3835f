"""Tenants have one source, stack.toml: compose.yaml's tenant parts and the broker definitions agree with it, and
`python -m tools.tenants add|remove` changes all of it in one step (on a copy of this project)."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tools import settings, tenants

PROJECT = Path(__file__).resolve().parents[2]
# What the tenant commands read and write; the rest of the project is not needed on the copy.
PARTS = ("stack.toml", "compose.yaml", "src", "pki", "secrets")


@pytest.fixture
def copy(tmp_path) -> Path:
    for part in PARTS:
        source, target = PROJECT / part, tmp_path / part
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return tmp_path


def snapshot(project: Path) -> dict[str, str]:
    return {name: (project / name).read_text() for name in ("stack.toml", "compose.yaml", "secrets/definitions.json")}


def test_compose_file_and_definitions_agree_with_stack_toml():
    stack = settings.load(PROJECT)
    assert tenants.out_of_date(stack) == []
    compose = yaml.safe_load((PROJECT / "compose.yaml").read_text())
    assert {name for name in compose["services"] if name not in ("broker", stack.results_host)} == {
        service for vhost in stack.vhosts for service in (stack.worker_service(vhost), stack.producer_service(vhost),
                                                          *([stack.dashboard_service(vhost)] if stack.dashboard else []))}
    definitions = json.loads((PROJECT / "secrets" / "definitions.json").read_text())
    assert [vhost["name"] for vhost in definitions["vhosts"]] == list(stack.vhosts)
    assert [user["name"] for user in definitions["users"]] == stack.broker_users


def test_a_hand_edit_inside_the_generated_block_is_reported(copy):
    compose = copy / "compose.yaml"
    compose.write_text(compose.read_text().replace("mem_limit: 512m", "mem_limit: 4g", 1))
    assert tenants.out_of_date(settings.load(copy)) == ["services"]
    assert tenants.main(["--project-dir", str(copy), "check"]) == 1
    assert tenants.sync(copy) == ["services"] and tenants.out_of_date(settings.load(copy)) == []


def test_add_then_remove_a_tenant_in_one_command_each(copy):
    before = snapshot(copy)
    assert tenants.main(["--project-dir", str(copy), "add", "support", "--priority"]) == 0
    stack = settings.load(copy)
    assert stack.vhosts[-1] == "support" and tenants.out_of_date(stack) == []
    assert "support" in stack.priority_vhosts and stack.tenant_queues("support") == ["tasks", "priority"]
    compose = yaml.safe_load((copy / "compose.yaml").read_text())
    worker = compose["services"]["worker-support"]
    assert worker["environment"]["TASKS_BROKER_URL"].startswith("amqps://support-worker@")
    assert worker["environment"]["TASKS_ALLOWED_QUEUES"] == "tasks,priority"
    assert "data-support" in compose["volumes"]
    identities = [f"support-{role}" for role in stack.roles]       # and support-monitor with the dashboard
    for identity in identities:
        assert (copy / "pki" / f"{identity}.crt").exists() and (copy / "pki" / f"{identity}.key").exists()
        assert (copy / "secrets" / f"{identity}.password").exists() == stack.passwords   # none with certificate login
    definitions = json.loads((copy / "secrets" / "definitions.json").read_text())
    assert set(identities) <= {user["name"] for user in definitions["users"]}
    # flower = https: its dashboard too, with its own HTTPS pair and login.
    dashboard = [stack.dashboard_service("support")] if stack.dashboard else []
    for name in dashboard:
        assert compose["services"][name]["environment"]["TASKS_BROKER_URL"].startswith("amqps://support-monitor@")
        assert compose["services"]["worker-support"]["environment"]["TASKS_SEND_EVENTS"] == "true"
        assert (copy / "pki" / f"{name}.crt").exists() and (copy / "secrets" / f"{name}.password").exists()

    assert tenants.main(["--project-dir", str(copy), "remove", "support"]) == 0
    after = snapshot(copy)
    assert after["stack.toml"] == before["stack.toml"] and after["compose.yaml"] == before["compose.yaml"]
    support_users = len(identities) * (2 if stack.passwords else 1)     # with password login each identity has two
    assert {user["name"] for user in json.loads(after["secrets/definitions.json"])["users"]} == \
        set(stack.broker_users[:-support_users])
    # Its passwords deleted; its certificates revoked (archived, the CRL the broker reads lists them).
    leftovers = [*(copy / "secrets").glob("*support*"), *(copy / "pki").glob("*support*")]
    assert leftovers == []
    assert len(list((copy / "pki" / "archive").rglob("*support*.crt"))) == len(identities) + len(dashboard)


@pytest.mark.parametrize("arguments, message", [
    (["add", "Support"], "vhost 'Support' must be 2-24 characters"),
    (["add", "FIRST"], "is already a tenant"),
    (["add", "x"], "vhost 'x' must be 2-24 characters"),
    (["add", "dashboard"], "vhost 'dashboard' is reserved"),
    (["remove", "nobody"], "'nobody' is not a tenant"),
])
def test_bad_input_is_refused_with_a_reason_and_changes_nothing(copy, capsys, arguments, message):
    arguments = [settings.load(copy).vhosts[0] if argument == "FIRST" else argument for argument in arguments]
    before, files = snapshot(copy), sorted(path.name for path in (copy / "pki").iterdir())
    assert tenants.main(["--project-dir", str(copy), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(copy) == before and sorted(path.name for path in (copy / "pki").iterdir()) == files
