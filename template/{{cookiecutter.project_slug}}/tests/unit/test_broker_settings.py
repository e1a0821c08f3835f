"""The app refuses to start with any setting that would weaken transport security (TLS-03, TLS-04)."""
import ssl

import pytest
from amqp.sasl import AMQPLAIN

from {{ cookiecutter.package_name }} import errors
from {{ cookiecutter.package_name }}.broker_settings import BrokerSettings

pytestmark = pytest.mark.controls("TLS-03", "TLS-04")


def test_tls_url_is_accepted_and_verifies_host_name():
    settings = BrokerSettings.from_env()
    options = settings.ssl_options()
    assert options["cert_reqs"] == ssl.CERT_REQUIRED
    assert options["server_hostname"] == "{{ cookiecutter.broker_host }}"
    assert options["tls_minimum_version"] == ssl.TLSVersion.TLSv1_2


def test_certificate_login_sends_no_password(monkeypatch):
    """x509 EXTERNAL: the URL goes out without a password and no password file is read (or needed)."""
    monkeypatch.setenv("TASKS_BROKER_LOGIN", "certificate")
    monkeypatch.setenv("TASKS_BROKER_PASSWORD_FILE", "/nonexistent/password")
    settings = BrokerSettings.from_env()
    assert (settings.login_method, settings.password_file) == ("EXTERNAL", None)
    assert settings.connection_url() == "amqps://unit-producer@{{ cookiecutter.broker_host }}:5671/unit"


def test_password_login_reads_its_file_at_every_connection(monkeypatch, tmp_path):
    """The URL never carries the password; the login mechanism reads user and password from the credential file each
    time a connection starts, so a rotated file (CRED-08) is used from the next connection on."""
    credential = tmp_path / "broker_password"
    credential.write_text('{"user": "unit-producer", "password": "first"}')
    monkeypatch.setenv("TASKS_BROKER_PASSWORD_FILE", str(credential))
    monkeypatch.setenv("TASKS_BROKER_LOGIN", "password")
    settings = BrokerSettings.from_env()
    assert settings.login_method == "AMQPLAIN"
    assert settings.connection_url() == "amqps://unit-producer@{{ cookiecutter.broker_host }}:5671/unit"
    (login,) = settings.authentication()
    assert login.mechanism == b"AMQPLAIN"
    assert login.start(None) == AMQPLAIN("unit-producer", "first").start(None)
    credential.write_text('{"user": "unit-producer.b", "password": "second"}')
    assert login.start(None) == AMQPLAIN("unit-producer.b", "second").start(None)


def test_a_credential_file_of_another_identity_is_refused(monkeypatch, tmp_path):
    credential = tmp_path / "broker_password"
    credential.write_text('{"user": "unit-worker", "password": "its-password"}')
    monkeypatch.setenv("TASKS_BROKER_PASSWORD_FILE", str(credential))
    monkeypatch.setenv("TASKS_BROKER_LOGIN", "password")
    with pytest.raises(errors.ImproperlyConfigured, match="is for user 'unit-worker', not one of unit-producer's"):
        BrokerSettings.from_env()


def test_unknown_login_is_refused(monkeypatch):
    monkeypatch.setenv("TASKS_BROKER_LOGIN", "anonymous")
    with pytest.raises(errors.ImproperlyConfigured, match="TASKS_BROKER_LOGIN 'anonymous' is not one of"):
        BrokerSettings.from_env()


@pytest.mark.parametrize("url", ["amqp://u@broker:5672/v", "pyamqp://u@broker/v", "memory://"])
def test_plaintext_broker_url_is_refused(monkeypatch, url):
    monkeypatch.setenv("TASKS_BROKER_URL", url)
    with pytest.raises(errors.ImproperlyConfigured, match="only 'amqps://'"):
        BrokerSettings.from_env()


def test_password_in_url_is_refused(monkeypatch):
    monkeypatch.setenv("TASKS_BROKER_URL", "amqps://u:secret@broker:5671/v")
    with pytest.raises(errors.ImproperlyConfigured, match="carries a password"):
        BrokerSettings.from_env()


def test_missing_client_key_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("TLS_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(errors.ImproperlyConfigured, match="client key file .* does not exist"):
        BrokerSettings.from_env()


def test_missing_broker_url_is_refused(monkeypatch):
    monkeypatch.delenv("TASKS_BROKER_URL")
    with pytest.raises(errors.ImproperlyConfigured, match="TASKS_BROKER_URL is not set"):
        BrokerSettings.from_env()


@pytest.mark.parametrize("content", ["\n", "a-bare-password\n", '{"user": "unit-producer"}', '{"user": "unit-producer", "password": ""}'])
def test_an_empty_or_malformed_credential_file_is_refused(monkeypatch, tmp_path, content):
    credential = tmp_path / "password"
    credential.write_text(content)
    monkeypatch.setenv("TASKS_BROKER_PASSWORD_FILE", str(credential))
    monkeypatch.setenv("TASKS_BROKER_LOGIN", "password")
    monkeypatch.setattr("{{ cookiecutter.package_name }}.password_login.READ_PAUSE_SECONDS", 0)
    with pytest.raises(errors.ImproperlyConfigured, match="is empty or not a JSON object"):
        BrokerSettings.from_env()


def test_server_name_override_for_loopback_access(monkeypatch):
    monkeypatch.setenv("TASKS_BROKER_URL", "amqps://unit-producer@127.0.0.1:5671/v")
    monkeypatch.setenv("TLS_SERVER_NAME", "{{ cookiecutter.broker_host }}")
    assert BrokerSettings.from_env().ssl_options()["server_hostname"] == "{{ cookiecutter.broker_host }}"


@pytest.mark.parametrize("name", ["BROKER_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"])
def test_celery_override_variables_are_refused(monkeypatch, name):
    # Celery's CLI turns BROKER_URL into --broker, which would bypass every check above.
    monkeypatch.setenv(name, "amqp://guest:guest@evil:5672//")
    with pytest.raises(errors.ImproperlyConfigured, match=f"{name} is set"):
        BrokerSettings.from_env()
