"""Error reports (error_reports = sentry) hold no secret argument, and go only to the Sentry the workers were given
a certificate for (LOG-03).

The workers of the stack under test report to a stand-in Sentry (tests/harness/error_report_receiver.py): the DSN
and the CA in the test copy of secrets/ are its own. With error_reports = off there is none of it: no Sentry SDK in
the worker image, no DSN mounted, and nothing to report with."""
import json
import secrets

import pytest

from tests.harness.error_report_receiver import ErrorReportReceiver
from tests.harness.readiness import wait_until

controls = pytest.mark.controls
SET_API_TOKEN = "{{ cookiecutter.package_name }}.tasks.accounts.set_api_token"
MASK = "**********"
UNKNOWN_CA = "TLSV1_ALERT_UNKNOWN_CA"      # the alert a client sends when it does not trust the server's certificate
BAD_CERTIFICATE = "SSLV3_ALERT_BAD_CERTIFICATE"   # ...and when the certificate is not for the name it asked for


def events_of(receiver: ErrorReportReceiver, task_id: str) -> list[dict]:
    """The error events the receiver holds for this task (an envelope: a header line, then item headers and
    payloads, one JSON document per line)."""
    found = []
    for envelope in receiver.envelopes():
        for line in envelope.splitlines():
            document = json.loads(line) if line.startswith("{") else {}
            if "exception" in document and document.get("tags", {}).get("celery_task_id") == task_id:
                found.append(document)
    return found


def refused_calls(celery_client, name: str) -> tuple[list, list[str]]:
    """Two calls the worker refuses (account_id 0 fails the schema), a canary secret in each, by position and by
    name: each task fails and is reported."""
    from {{ cookiecutter.package_name }}.errors import InvalidTaskArguments
    canaries = [f"canary-{name}-{kind}-{secrets.token_hex(12)}" for kind in ("positional", "keyword")]
    calls = [celery_client.send_task(SET_API_TOKEN, args=[0, canaries[0]]),
             celery_client.send_task(SET_API_TOKEN, kwargs={"account_id": 0, "token": canaries[1]})]
    for call in calls:
        with pytest.raises(InvalidTaskArguments):
            call.get(timeout=30)
    return calls, canaries


def assert_nothing_reports(worker, record_property) -> None:
    """error_reports = off: nothing in the workers could report, or knows where to."""
    code, output = worker.exec_run(["python3", "-c", "import sentry_sdk"])
    assert code != 0 and b"No module named 'sentry_sdk'" in output
    code, output = worker.exec_run(["ls", "/run/secrets"])
    assert code == 0 and b"error_reports" not in output, output
    record_property("evidence", "error_reports = off: no Sentry SDK in the worker image, no DSN mounted")


@controls("LOG-03")
def test_an_error_report_arrives_without_the_secret_arguments(stack, vhosts, celery_client, error_report_receiver,
                                                              record_property):
    worker = stack.workers[vhosts[0]]
    if error_report_receiver is None:
        return assert_nothing_reports(worker, record_property)
    receiver = error_report_receiver
    calls, canaries = refused_calls(celery_client, "reported")
    # The legitimate path: each failure reported once, naming the task, its error and its tenant, with the arguments
    # that are not secret.
    events = {call.id: wait_until(lambda call=call: events_of(receiver, call.id), timeout=60,
                                  what=f"the error report of {call.id}") for call in calls}
    # The refusal: neither secret anywhere in what the Sentry received.
    received = "\n".join(receiver.envelopes())
    for canary in canaries:
        assert canary not in received, "a secret argument is in an error report"
    for call in calls:
        [event] = events[call.id]
        assert event["exception"]["values"][-1]["type"] == "InvalidTaskArguments"
        assert event["extra"]["celery-job"]["task_name"] == SET_API_TOKEN and event["tags"]["tenant"] == vhosts[0]
    assert events[calls[0].id][0]["extra"]["celery-job"]["args"] == [0, MASK]
    assert events[calls[1].id][0]["extra"]["celery-job"]["kwargs"] == {"account_id": 0, "token": MASK}
    record_property("evidence", f"2 refused calls with a secret token, reported: {len(received)} characters "
                                f"received over HTTPS, arguments {events[calls[0].id][0]['extra']['celery-job']['args']} "
                                f"and {events[calls[1].id][0]['extra']['celery-job']['kwargs']}, no secret")


@controls("LOG-03")
def test_no_report_goes_to_a_server_without_a_certificate_of_the_sentry_for_its_name(stack, vhosts, celery_client,
                                                                                 error_report_receiver,
                                                                                 record_property):
    if error_report_receiver is None:
        return assert_nothing_reports(stack.workers[vhosts[0]], record_property)
    # Someone else answers for the DSN's host (a hijacked name, a proxy): with a certificate of another CA, or of the
    # Sentry's own CA but for another name.
    error_report_receiver.stop()
    impostors = {"another CA": (ErrorReportReceiver(stack.stack), UNKNOWN_CA),
                 "another name": (ErrorReportReceiver(stack.stack, issued_by=error_report_receiver,
                                                      certified_name="elsewhere.test"), BAD_CERTIFICATE)}
    refusals = {}
    try:
        for what, (impostor, alert) in impostors.items():
            impostor.start(stack.project.name)
            refused_calls(celery_client, "impostor")
            # Either outcome of both reports ends the wait: the workers' refusals of its certificate, or reports.
            wait_until(lambda impostor=impostor: len(impostor.lost_handshakes()) + len(impostor.envelopes()) >= 2,
                       timeout=60, what=f"the workers' two attempts to report to an impostor with {what}")
            assert impostor.envelopes() == [], f"the workers reported to a server with a certificate of {what}"
            lost = impostor.lost_handshakes()
            assert all(alert in line for line in lost), lost
            refusals[what] = lost
            impostor.remove()
        record_property("evidence", f"a server under the DSN's host name with a certificate of another CA: "
                                    f"{refusals['another CA'][0]}; of the Sentry's CA for another name: "
                                    f"{refusals['another name'][0]}; no envelope received")
    finally:
        for impostor, _ in impostors.values():
            impostor.remove()
        error_report_receiver.start(stack.project.name)      # the stack's Sentry answers again
