"""Session fixtures of the live security suite: one hardened stack, shared by every test, always removed."""
import os
from pathlib import Path

import pytest

from tests.security.compliance import ComplianceReport
from tests.security.stack import start_stack
from tests.security.weakenings import selected

PROJECT_DIR = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.pluginmanager.register(ComplianceReport(selected()), "compliance-report")


@pytest.fixture(scope="session")
def stack():
    running = start_stack(PROJECT_DIR)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def vhosts(stack) -> list[str]:
    return stack.settings["workers"]["vhosts"]


@pytest.fixture(scope="session")
def celery_client(stack, vhosts):
    """The project's own Celery app, as the first vhost's producer, over TLS to the published port."""
    endpoint = stack.endpoint
    vhost = vhosts[0]
    saved = dict(os.environ)
    os.environ.update({
        "TASKS_BROKER_URL": f"amqps://{vhost}-producer@127.0.0.1:{endpoint.port}/{vhost}",
        "TLS_SERVER_NAME": stack.settings["broker"]["host"],
        "TASKS_BROKER_PASSWORD_FILE": str(PROJECT_DIR / "secrets" / f"{vhost}-producer.password"),
        "TLS_CA_FILE": str(PROJECT_DIR / "pki" / "ca.crt"),
        "TLS_CERT_FILE": str(PROJECT_DIR / "pki" / "producer.crt"),
        "TLS_KEY_FILE": str(PROJECT_DIR / "pki" / "producer.key"),
    })
    from {{ cookiecutter.package_name }}.celery_app import app
    from {{ cookiecutter.package_name }}.config import build_config
    from {{ cookiecutter.package_name }}.settings import BrokerSettings
    app.conf.update(build_config(BrokerSettings.from_env()))  # in case unit tests imported it first
    if stack.weakening:
        stack.weakening.producer()
    yield app
    os.environ.clear()
    os.environ.update(saved)   # later tests (unit) see the environment they expect
