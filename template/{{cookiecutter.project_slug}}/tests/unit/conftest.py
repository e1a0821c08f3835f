"""Every unit test starts from the same environment, whatever the shell had: the one a container would give
(broker_settings.py reads it; tests/unit/unit_app.py builds the app from explicit settings instead)."""
import pytest

from tests.unit.unit_app import FILES

(FILES / "broker_password").write_text('{"user": "unit-producer", "password": "unit-test-password"}\n')
UNIT_ENVIRONMENT = {
    "TASKS_BROKER_URL": "amqps://unit-producer@{{ cookiecutter.broker_host }}:5671/unit",
    "SECRETS_DIR": str(FILES),
    "APP_DATA_DIR": str(FILES),
{%- if cookiecutter.result_backend == "redis" %}
    "TASKS_RESULT_STORE_URL": "rediss://unit-producer@results:6379/0",     # its login: FILES/results_password
{%- endif %}
}
# Settings a shell (or an operator's .env) may hold, which each settings test sets itself where it needs them.
OPTIONAL = ("TLS_SERVER_NAME", "TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "TASKS_BROKER_PASSWORD_FILE",
            "TASKS_BROKER_LOGIN", "TASKS_RESULT_BACKEND", "TASKS_RESULT_STORE_PASSWORD_FILE")


@pytest.fixture(autouse=True)
def unit_environment(monkeypatch):
    for name in OPTIONAL:
        monkeypatch.delenv(name, raising=False)
    for name, value in UNIT_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
