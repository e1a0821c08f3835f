"""A secret task argument travels only in the message body, to the task (LOG-01): masked in the headers that repeat
arguments as text, in the worker's log lines and in refusals, whoever sent it."""
import json
import secrets

import pytest
from celery.signals import before_task_publish

from tests.harness.readiness import logs, wait_until

controls = pytest.mark.controls
SET_API_TOKEN = "{{ cookiecutter.package_name }}.tasks.accounts.set_api_token"
MASK = "**********"


def canary(name: str) -> str:
    return f"canary-{name}-{secrets.token_hex(12)}"


def log_lines_of(worker, task_id: str) -> list[dict]:
    lines = [json.loads(line) for line in logs(worker).splitlines() if line.startswith("{") and task_id in line]
    return [line for line in lines if task_id in line.get("message", "") or line.get("task_id") == task_id]


def dashboard_text(stack, vhost: str, secrets_dir, task_ids: list[str]) -> str:
    """What the tenant's dashboard (flower = https) shows of these tasks, once it has seen each finish: its task
    list and each task's page. Empty without a dashboard."""
    from tests.security.test_dashboard import login_header, request
    if not stack.stack.dashboard:
        return ""
    port, header = stack.dashboard_port(vhost), login_header(secrets_dir, stack.stack.dashboard_service(vhost))

    def finished() -> bool:
        status, body = request(port, "/api/tasks", header)
        shown = json.loads(body) if status == 200 else {}
        return all(shown.get(task, {}).get("state") in ("SUCCESS", "FAILURE") for task in task_ids)
    wait_until(finished, timeout=60, what="the dashboard showing every task finished")
    return "".join(request(port, path, header)[1] for path in ["/api/tasks", *(f"/task/{task}" for task in task_ids)])


@controls("LOG-01")
def test_a_secret_argument_is_masked_in_headers_logs_and_refusals(stack, vhosts, celery_client, test_secrets,
                                                                  record_property):
    from {{ cookiecutter.package_name }}.errors import InvalidTaskArguments
    from {{ cookiecutter.package_name }}.tasks.accounts import set_api_token
    worker = stack.workers[vhosts[0]]
    ours, by_name, refused = canary("producer"), canary("by-name"), canary("refused")
    published: dict[str, dict] = {}

    def capture(headers=None, **_):
        published[headers["id"]] = dict(headers)
    before_task_publish.connect(capture, weak=False)
    try:
        # Our producer: the validated call, its headers masked at the source.
        sent = set_api_token.delay(101, ours)
        # A producer sending by name (not ours, or a script): its headers carry the secret; the worker masks them.
        forged = celery_client.send_task(SET_API_TOKEN, kwargs={"account_id": 102, "token": by_name})
        # A call the worker refuses, with the secret in it.
        invalid = celery_client.send_task(SET_API_TOKEN, kwargs={"account_id": 0, "token": refused})
    finally:
        before_task_publish.disconnect(capture)

    # The legitimate path: both calls run, with the secret (the store keeps its digest).
    assert sent.get(timeout=30) == {"account_id": 101, "changed": True}
    assert forged.get(timeout=30) == {"account_id": 102, "changed": True}
    with pytest.raises(InvalidTaskArguments) as caught:
        invalid.get(timeout=30)
    assert "account_id: " in str(caught.value) and refused not in str(caught.value)

    # Headers as they left our producer: masked; as a by-name producer sent them: the secret (the attack is real).
    headers = published[sent.id]
    assert ours not in json.dumps(headers, default=str) and MASK in headers["argsrepr"] + headers["kwargsrepr"]
    assert by_name in published[forged.id]["kwargsrepr"]

    # The worker's log lines for each call: the arguments shown, the secret masked, whoever sent it.
    for result in (sent, forged, invalid):
        wait_until(lambda result=result: any("succeeded" in line["message"] or "raised" in line["message"]
                                             for line in log_lines_of(worker, result.id)),
                   timeout=30, what=f"the worker's last log line for {result.id}")
    worker_log = logs(worker)
    for secret in (ours, by_name, refused):
        assert secret not in worker_log, "a secret argument is in the worker's log"
    # The dashboard (flower = https) shows the arguments of the workers' task events: masked too.
    shown = dashboard_text(stack, vhosts[0], test_secrets, [sent.id, forged.id, invalid.id])
    for secret in (ours, by_name, refused):
        assert secret not in shown, "a secret argument is on the dashboard"
    assert not stack.stack.dashboard or MASK in shown
    received = [line for line in log_lines_of(worker, forged.id) if "received" in line["message"]]
    assert received and MASK in received[0]["kwargs"] and "102" in received[0]["kwargs"], received
    record_property("evidence", f"3 calls with a secret token: our producer's headers {headers['argsrepr']} "
                                f"{headers['kwargsrepr']}; the worker logged the by-name call as "
                                f"{received[0]['kwargs']}; refusal: {caught.value}; no secret in the worker's log"
                                + (f"; the dashboard's task list and pages ({len(shown)} characters): masked"
                                   if shown else ""))
