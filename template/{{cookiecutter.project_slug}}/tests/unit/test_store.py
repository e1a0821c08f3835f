"""The example tasks are idempotent: a redelivered message changes nothing the second time."""
from {{ cookiecutter.package_name }}.tasks.accounts import activate_account
from {{ cookiecutter.package_name }}.tasks.notifications import deliver_notification
from {{ cookiecutter.package_name }}.tasks.payments import record_payment


def test_activate_account_twice_changes_once(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_DATA_DIR", str(tmp_path))
    assert activate_account(42) == {"account_id": 42, "changed": True}
    assert activate_account(42) == {"account_id": 42, "changed": False}


def test_payment_recorded_once(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_DATA_DIR", str(tmp_path))
    assert record_payment("pay-1", 1999, "EUR")["recorded"] is True
    assert record_payment("pay-1", 1999, "EUR")["recorded"] is False


def test_notification_queued_once(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_DATA_DIR", str(tmp_path))
    args = ("n-1", "ops@example.com", "hello", "body")
    assert deliver_notification(*args)["queued"] is True
    assert deliver_notification(*args)["queued"] is False


def test_retry_policy_is_bounded():
    assert deliver_notification.max_retries == 5
    assert deliver_notification.retry_backoff and deliver_notification.retry_jitter
