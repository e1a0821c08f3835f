"""Unit tests import the app without a broker: point its settings at throwaway files first."""
import os
import tempfile
from pathlib import Path

_FILES = Path(tempfile.mkdtemp(prefix="unit-secrets-"))
for _name in ("ca.crt", "client.crt", "client.key"):
    (_FILES / _name).write_text("placeholder, never used to connect in unit tests\n")
(_FILES / "broker_password").write_text("unit-test-password\n")
os.environ.update({
    "TASKS_BROKER_URL": "amqps://unit-producer@{{ cookiecutter.broker_host }}:5671/unit",
    "SECRETS_DIR": str(_FILES),
    "APP_DATA_DIR": str(_FILES),
})
