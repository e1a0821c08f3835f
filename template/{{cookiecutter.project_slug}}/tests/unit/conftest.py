"""Unit tests import the app without a broker: point its settings at throwaway files first."""
import os
import tempfile
from pathlib import Path

import pytest

_FILES = Path(tempfile.mkdtemp(prefix="unit-secrets-"))
for _name in ("ca.crt", "client.crt", "client.key"):
    (_FILES / _name).write_text("placeholder, never used to connect in unit tests\n")
(_FILES / "broker_password").write_text("unit-test-password\n")
UNIT_ENVIRONMENT = {
    "TASKS_BROKER_URL": "amqps://unit-producer@{{ cookiecutter.broker_host }}:5671/unit",
    "SECRETS_DIR": str(_FILES),
    "APP_DATA_DIR": str(_FILES),
}
# Set by the live suite's client fixture when both suites run in one session.
LIVE_ONLY = ("TLS_SERVER_NAME", "TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "TASKS_BROKER_PASSWORD_FILE",
             "TASKS_BROKER_LOGIN")
os.environ.update(UNIT_ENVIRONMENT)   # before any test module imports the app


@pytest.fixture(autouse=True)
def unit_environment(monkeypatch):
    for name in LIVE_ONLY:
        monkeypatch.delenv(name, raising=False)
    for name, value in UNIT_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
