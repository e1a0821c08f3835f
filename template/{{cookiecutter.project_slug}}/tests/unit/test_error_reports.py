"""Error reports (error_reports = sentry) carry no secret argument, and go over HTTPS only (LOG-03): the real SDK and
its Celery integration, with the shipped settings, their envelopes caught before they would leave the process."""
import json

import pytest
import sentry_sdk
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
    sentry_sdk.init()                        # no DSN: later tests report nothing


def test_a_refused_call_is_reported_with_its_secret_masked(reports):
    set_api_token.apply(args=(0, CANARY))               # account_id 0 is refused by the schema: a task failure
    set_api_token.apply(kwargs={"account_id": 0, "token": CANARY})
    sentry_sdk.flush()
    assert len(reports) == 2
    for envelope in reports:
        assert CANARY not in envelope
        assert "InvalidTaskArguments" in envelope and set_api_token.name in envelope and redaction.MASK in envelope
    event = json.loads(reports[0].splitlines()[2])
    assert event["extra"]["celery-job"]["args"] == [0, redaction.MASK]
    assert event["tags"]["tenant"] == "unit"
    assert all("vars" not in frame for value in event["exception"]["values"]
               for frame in value["stacktrace"]["frames"]), "frame variables are collected"


def test_a_secret_quoted_elsewhere_in_a_report_is_masked_too():
    event = {"extra": {"celery-job": {"task_name": set_api_token.name, "args": [7], "kwargs": {"token": CANARY}}},
             "exception": {"values": [{"type": "ValueError", "value": f"token {CANARY} was refused"}]},
             "breadcrumbs": {"values": [{"message": f"calling with {CANARY}"}]}}
    scrubbed = json.dumps(error_reports.scrub(event, app.tasks))
    assert CANARY not in scrubbed and scrubbed.count(redaction.MASK) == 3 and '"args": [7]' in scrubbed


def test_a_task_without_a_schema_keeps_no_arguments():
    event = {"extra": {"celery-job": {"task_name": "not.ours", "args": [CANARY], "kwargs": {"x": CANARY}}}}
    assert error_reports.scrub(event, app.tasks)["extra"]["celery-job"] == {"task_name": "not.ours"}


def test_a_plaintext_dsn_stops_the_worker_without_echoing_it(tmp_path, monkeypatch):
    (tmp_path / "dsn").write_text("http://public-key@errors.example/1")
    monkeypatch.setenv(error_reports.DSN_FILE, str(tmp_path / "dsn"))
    with pytest.raises(errors.ImproperlyConfigured, match="'http', not 'https'") as refused:
        error_reports.start(app)
    assert "public-key" not in str(refused.value)


def test_an_empty_dsn_sends_nothing(tmp_path, monkeypatch, caplog):
    (tmp_path / "dsn").write_text("\n")
    monkeypatch.setenv(error_reports.DSN_FILE, str(tmp_path / "dsn"))
    assert error_reports.start(app) is False
    assert "error reports off" in caplog.text
    assert error_reports.ca_bundle(str(tmp_path / "dsn")) is None      # an empty CA file: certifi's bundle
