"""The result store (result_backend = redis) without a store: its users as the ACL file gives them, and the clients'
settings (TLS, host name, login, key prefix, bound) as result_store.py makes them."""
import hashlib
import json
import ssl
from pathlib import Path

import pytest
from celery.exceptions import BackendStoreError

from tests.unit.unit_app import FILES, app
from tools import result_store, settings
from {{ cookiecutter.package_name }}.errors import ImproperlyConfigured
from {{ cookiecutter.package_name }}.result_store import MAX_RESULT_BYTES, BoundedRedisBackend, ResultStoreSettings

PROJECT = Path(__file__).resolve().parents[2]
STACK = settings.load(PROJECT)
# Never granted to anyone: administration, every key at once, arbitrary scripts.
DANGEROUS = {"config", "flushall", "flushdb", "keys", "scan", "debug", "module", "acl", "shutdown", "eval",
             "script|flush", "monitor", "info", "client|kill", "client|list", "replicaof", "migrate", "save"}


def users(acl: str) -> dict[str, list[str]]:
    return {line.split()[1]: line.split()[2:] for line in acl.splitlines()}


def test_the_default_user_is_off_without_password_or_rights():
    rules = users(result_store.acl_text(STACK, {identity: "x" for identity in STACK.result_store_identities}))
    assert rules["default"] == ["off", "resetpass", "resetkeys", "resetchannels", "-@all"]


def test_each_user_is_confined_to_its_tenants_prefix_and_to_celerys_commands():
    rules = users(result_store.acl_text(STACK, {identity: f"pw-{identity}" for identity in STACK.result_store_identities}))
    assert set(rules) == {"default", *STACK.result_store_identities}
    for vhost in STACK.vhosts:
        worker, producer = rules[f"{vhost}-worker"], rules[f"{vhost}-producer"]
        assert worker[1] == "#" + hashlib.sha256(f"pw-{vhost}-worker".encode()).hexdigest()
        assert [rule for rule in worker if rule[0] in "~&%"] == [f"~{vhost}:*", f"&{vhost}:*"]
        # Producers read results (no write: no forgery) and write only group bookkeeping.
        assert [rule for rule in producer if rule[0] in "~&%"] == [
            f"%R~{vhost}:celery-task-meta-*", f"~{vhost}:celery-taskset-meta-*", f"&{vhost}:celery-task-meta-*"]
        for rule in (worker, producer):
            assert "-@all" in rule and not any(grant.startswith("+@") for grant in rule)
            assert not {grant[1:] for grant in rule if grant.startswith("+")} & DANGEROUS


def test_generate_keeps_passwords_and_writes_hashes_only(tmp_path):
    result_store.generate(STACK, tmp_path)
    first = {path.name: path.read_text() for path in tmp_path.glob("results-*.password")}
    assert len(first) == len(STACK.result_store_identities)
    result_store.generate(STACK, tmp_path)                  # a second run (e.g. after a tenant change) keeps them
    assert {path.name: path.read_text() for path in tmp_path.glob("results-*.password")} == first
    acl = (tmp_path / result_store.ACL_FILE).read_text()
    for text in first.values():
        assert json.loads(text)["password"] not in acl
    assert all(oct(path.stat().st_mode & 0o777) == "0o600" for path in tmp_path.iterdir())


def test_clients_check_the_store_present_a_certificate_and_use_their_tenants_prefix():
    config = app.conf
    tls = config.redis_backend_use_ssl
    assert tls["ssl_cert_reqs"] == ssl.CERT_REQUIRED and tls["ssl_check_hostname"] is True
    assert tls["ssl_min_version"] == ssl.TLSVersion.TLSv1_2 and tls["ssl_certfile"] and tls["ssl_keyfile"]
    assert config.result_backend.endswith("BoundedRedisBackend+rediss://results:6379/0")     # no login in the URL
    assert config.result_backend_transport_options == {"global_keyprefix": "unit:"}
    assert config.redis_backend_credential_provider.get_credentials() == ("unit-producer", "unit-test-password")
    assert app.backend.get_key_for_task("id") == b"unit:celery-task-meta-id"


def test_a_result_over_the_bound_is_refused_before_it_is_sent():
    backend = app.backend
    assert isinstance(backend, BoundedRedisBackend) and backend.supports_chords
    with pytest.raises(BackendStoreError, match="value too large for Redis backend"):
        backend.set("unit:celery-task-meta-big", "x" * (MAX_RESULT_BYTES + 1))     # no store contacted


@pytest.mark.parametrize("url, problem", [
    ("redis://unit-producer@results:6379/0", r"only 'rediss://' \(TLS\) is allowed"),
    ("rediss://unit-producer:secret@results:6379/0", "without a password"),
    ("rediss://results:6379/0", "without a password"),
])
def test_a_plaintext_or_password_carrying_url_stops_the_process(monkeypatch, url, problem):
    monkeypatch.setenv("TASKS_RESULT_STORE_URL", url)
    with pytest.raises(ImproperlyConfigured, match=problem) as refused:
        ResultStoreSettings.from_env("unit", FILES / "ca.crt", FILES / "client.crt", FILES / "client.key", str(FILES))
    assert "secret" not in str(refused.value)


def test_a_credential_file_of_another_user_stops_the_process(monkeypatch, tmp_path):
    other = tmp_path / "results_password"
    other.write_text('{"user": "other-worker", "password": "x"}')
    monkeypatch.setenv("TASKS_RESULT_STORE_URL", "rediss://unit-producer@results:6379/0")
    monkeypatch.setenv("TASKS_RESULT_STORE_PASSWORD_FILE", str(other))
    with pytest.raises(ImproperlyConfigured, match="is for user 'other-worker'"):
        ResultStoreSettings.from_env("unit", FILES / "ca.crt", FILES / "client.crt", FILES / "client.key", str(FILES))


def test_a_waiting_client_reads_a_result_whose_notification_it_missed(monkeypatch):
    """The result is in the store, its pub/sub notification never came: the periodic check hands it over."""
    backend = app.backend
    stored = backend.encode({"status": "SUCCESS", "result": 5, "task_id": "missed", "traceback": None,
                             "children": [], "date_done": None})

    class Store:
        def mget(self, keys):
            assert keys == [backend.get_key_for_task("missed")]
            return [stored]

    handed = []
    monkeypatch.setitem(backend.__dict__, "client", Store())
    monkeypatch.setattr(backend.result_consumer, "on_state_change", lambda meta, message: handed.append(meta))
    backend.read_stored_results(app.AsyncResult("missed"))
    assert [(meta["task_id"], meta["status"], meta["result"]) for meta in handed] == [("missed", "SUCCESS", 5)]
