"""Error reports (error_reports = sentry) carry no secret argument, and go over HTTPS only (LOG-03): the real SDK and
its Celery integration, with the shipped settings, their envelopes caught before they would leave the process."""
import json

import pytest
import sentry_sdk
from pydantic import BaseModel, SecretStr
from sentry_sdk.transport import Transport

from tests.unit.unit_app import app
from {{ cookiecutter.package_name }} import error_reports, errors, redaction
from {{ cookiecutter.package_name }}.tasks.accounts import set_api_token

pytestmark = pytest.mark.controls("LOG-03")
CANARY = "canary-secret-0123456789abcdef"
DSN = "https://public@errors.example/1"


class CaughtEnvelopes(Transport):
    caught: list[str] = []

    def capture_envelope(self, envelope):
        self.caught.append(envelope.serialize().decode("utf-8", "replace"))


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """error_reports.start() as a worker runs it, the SDK's transport swapped for one that keeps the envelopes."""
    (tmp_path / "dsn").write_text(DSN + "\n")
    monkeypatch.setenv(error_reports.DSN_FILE, str(tmp_path / "dsn"))
    shipped_init = sentry_sdk.init
    monkeypatch.setattr(sentry_sdk, "init", lambda **options: shipped_init(**options, transport=CaughtEnvelopes))
    CaughtEnvelopes.caught = []
    assert error_reports.start(app)
    yield CaughtEnvelopes.caught
    sentry_sdk.get_client().close()
    # No DSN, and none of the SDK's integrations (its Celery one would add trace headers to later tests' messages).
    sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


def events(envelopes: list[str]) -> list[dict]:
    return [json.loads(line) for envelope in envelopes for line in envelope.splitlines()
            if line.startswith("{") and '"exception"' in line]


def test_a_refused_call_is_reported_with_its_secret_masked(reports):
    set_api_token.apply(args=(0, CANARY))               # account_id 0 is refused by the schema: a task failure
    set_api_token.apply(kwargs={"account_id": 0, "token": CANARY, "tokn": CANARY})    # and a misspelt keyword
    sentry_sdk.flush()
    assert len(reports) == 2
    for envelope in reports:
        assert CANARY not in envelope
        assert "InvalidTaskArguments" in envelope and set_api_token.name in envelope and redaction.MASK in envelope
    positional, keywords = events(reports)
    assert positional["extra"]["celery-job"]["args"] == [0, redaction.MASK]
    assert keywords["extra"]["celery-job"]["kwargs"] == {"account_id": 0, "token": redaction.MASK,
                                                         "tokn": redaction.MASK}
    assert "account_id" in positional["exception"]["values"][-1]["value"]     # a refusal's message is kept
    assert positional["tags"]["tenant"] == "unit"
    assert all("vars" not in frame for value in positional["exception"]["values"]
               for frame in value["stacktrace"]["frames"]), "frame variables are collected"


def test_the_shipped_client_has_only_the_celery_dedupe_and_atexit_integrations(reports):
    """The SDK's default integrations would record logs and HTTP calls, report exceptions outside any task, and add
    trace headers carrying the DSN's key to every HTTP request a task makes."""
    client = sentry_sdk.get_client()
    assert sorted(client.integrations) == ["atexit", "celery", "dedupe"]
    assert client.options["trace_propagation_targets"] == [] and client.options["traces_sample_rate"] is None


def test_another_exception_of_a_call_with_secrets_is_withheld_and_other_events_are_dropped():
    event = {"extra": {"celery-job": {"task_name": set_api_token.name, "args": [7], "kwargs": {"token": CANARY}}},
             "exception": {"values": [{"type": "ValueError", "value": f"token {CANARY[:12]}... was refused"}]}}
    scrubbed = json.dumps(error_reports.scrub(event, app.tasks))
    assert CANARY[:12] not in scrubbed and error_reports.WITHHELD in scrubbed and '"args": [7]' in scrubbed
    assert error_reports.scrub({"exception": {"values": [{"value": CANARY}]}}, app.tasks) is None


def test_a_secret_inside_a_model_masks_the_whole_argument():
    class Credentials(BaseModel):
        user: str
        token: SecretStr

    class Call(BaseModel):
        account_id: int
        credentials: Credentials
    assert redaction.sensitive_fields(Call) == {"credentials"}
    assert redaction.masked_arguments(Call, [7, {"user": "u", "token": CANARY}], {}) == ([7, redaction.MASK], {})


def test_a_task_without_a_schema_keeps_no_arguments():
    event = {"extra": {"celery-job": {"task_name": "not.ours", "args": [CANARY], "kwargs": {"x": CANARY}}}}
    job = error_reports.scrub(event, app.tasks)["extra"]["celery-job"]
    assert job == {"task_name": "not.ours", "args": [redaction.MASK], "kwargs": {"x": redaction.MASK}}


def test_a_plaintext_dsn_stops_the_worker_without_echoing_it(tmp_path, monkeypatch):
    (tmp_path / "dsn").write_text("http://public-key@errors.example/1")
    monkeypatch.setenv(error_reports.DSN_FILE, str(tmp_path / "dsn"))
    with pytest.raises(errors.ImproperlyConfigured, match="'http', not 'https'") as refused:
        error_reports.start(app)
    assert "public-key" not in str(refused.value)


def test_a_ca_file_without_a_certificate_stops_the_worker(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(errors.ImproperlyConfigured, match="holds no CA certificate in PEM"):
        error_reports.ca_bundle(str(tmp_path / "ca.pem"))


def test_an_empty_dsn_sends_nothing_and_an_empty_ca_file_means_certifi(tmp_path, monkeypatch, caplog):
    import certifi
    (tmp_path / "dsn").write_text("\n")
    monkeypatch.setenv(error_reports.DSN_FILE, str(tmp_path / "dsn"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "dsn"))          # the environment does not choose the CA
    assert error_reports.start(app) is False
    assert "error reports off" in caplog.text
    assert error_reports.ca_bundle(str(tmp_path / "dsn")) == certifi.where()
