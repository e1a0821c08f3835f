"""Session fixtures of the live security suite: the shipped compose stack, shared by every test, always removed."""
import os
import shutil
from pathlib import Path

import pytest

from tests.harness.error_report_receiver import ErrorReportReceiver
from tests.harness.scratch import ScratchFiles
from tests.harness.stack_under_test import stack_under_test
from tests.security.compliance import ComplianceReport
from tests.security.weakenings import Weakening, selected
from tls import PKIError, load_root
from tools import settings

PROJECT_DIR = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.pluginmanager.register(ComplianceReport(selected()), "compliance-report")


@pytest.fixture(scope="session")
def weakening():
    name = selected()
    if name is None:
        yield None
        return
    weak = Weakening(name, settings.load(PROJECT_DIR))
    try:
        yield weak
    finally:
        weak.cleanup()


@pytest.fixture(scope="session")
def test_pki():
    """A copy of the project's pki/ (its archive aside) that the test stack mounts instead (PKI_DIR): tests revoke
    throwaway certificates and rotate pairs there with the PKI tooling, never in the project's own."""
    scratch = ScratchFiles("pki-")
    shutil.copytree(PROJECT_DIR / "pki", scratch.path / "pki", ignore=shutil.ignore_patterns("archive"))
    try:
        yield scratch.path / "pki"
    finally:
        scratch.remove()


@pytest.fixture(scope="session")
def test_secrets():
    """A copy of the project's secrets/ (definitions, and passwords with password login) that the test stack mounts
    instead (PROJECT_SECRETS_DIR): CRED-08 rotates passwords there, never in the project's own."""
    scratch = ScratchFiles("secrets-")
    shutil.copytree(PROJECT_DIR / "secrets", scratch.path / "secrets")
    try:
        yield scratch.path / "secrets"
    finally:
        scratch.remove()


@pytest.fixture(scope="session")
def root():
    """The project's root (key, certificate), for the tests of what only the root can do (TLS-07, TLS-08): from the
    bake's pki-root/, or from PKI_ROOT_DIR once it lives elsewhere (its passphrase file there, or at a prompt)."""
    try:
        return load_root(PROJECT_DIR / "pki", os.environ.get("PKI_ROOT_DIR"))
    except PKIError as exc:
        pytest.fail(f"these tests need the project's root: {exc} Set PKI_ROOT_DIR to its directory.", pytrace=False)


@pytest.fixture(scope="session")
def error_report_receiver(test_secrets):
    """With error_reports = sentry: the stand-in Sentry (tests/harness/error_report_receiver.py) whose DSN and CA
    the test copy of secrets/ holds before the workers start (they read them once); it runs on the stack's egress
    network from the moment the stack is up. None without error reports."""
    stack = settings.load(PROJECT_DIR)
    if not stack.reports_errors:
        yield None
        return
    receiver = ErrorReportReceiver(stack)
    receiver.write_secrets(test_secrets)
    try:
        yield receiver
    finally:
        receiver.remove()


@pytest.fixture(scope="session")
def stack(weakening, test_pki, test_secrets, error_report_receiver):
    overrides = (weakening.override_file(),) if weakening else ()
    # Tests log in with the copies' pairs and passwords too: one rotated there is the one they then present.
    running = stack_under_test(PROJECT_DIR, "security", overrides=overrides,
                               variables={"PKI_DIR": str(test_pki), "PROJECT_SECRETS_DIR": str(test_secrets)},
                               pki_dir=test_pki, secrets_dir=test_secrets)
    try:
        running.start()
        if error_report_receiver is not None:    # answering from the start: every failure of the suite is reported
            error_report_receiver.start(running.project.name)
        yield running
    finally:
        if error_report_receiver is not None:
            error_report_receiver.stop()         # off the egress network first, or it could not be removed
        running.stop()


@pytest.fixture(scope="session")
def vhosts(stack) -> tuple[str, ...]:
    return stack.stack.vhosts


@pytest.fixture(scope="session")
def celery_client(stack, vhosts, weakening):
    """The project's own Celery app (its factory, its tasks), as the first vhost's producer, over TLS to the
    published port."""
    from {{ cookiecutter.package_name }}.app_factory import create_app
    from {{ cookiecutter.package_name }}.broker_settings import BrokerSettings
    endpoint, topology, login = stack.endpoint, stack.stack.topology, stack.stack.login
    vhost = vhosts[0]
    user = topology.user_name(vhost, "producer")
    certificate, key = endpoint.certificate_files(user)
    ca = PROJECT_DIR / "pki" / "ca.crt"
    if weakening:
        weakening.patch_clients()         # before the app exists: some patches change how it is configured
    app = create_app(BrokerSettings(
        url=f"amqps://{user}@127.0.0.1:{endpoint.port}/{vhost}", login=login,
        password_file=endpoint.password_file(vhost, "producer") if stack.stack.passwords else None,
        ca_file=ca, cert_file=certificate, key_file=key,
        result_backend="{{ cookiecutter.result_backend }}",
        tls_server_name=stack.stack.broker_host, result_store=stack.result_store_settings(vhost, "producer")))
    return app

