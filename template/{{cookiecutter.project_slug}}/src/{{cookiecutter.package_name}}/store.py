"""The example tasks' data store: SQLite on the worker's data volume, written idempotently."""
import os
import sqlite3
from contextlib import closing
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (account_id INTEGER PRIMARY KEY, active INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payments (payment_id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL,
                                     currency TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (notification_id TEXT PRIMARY KEY, recipient TEXT NOT NULL,
                                   subject TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (account_id INTEGER PRIMARY KEY, token_sha256 TEXT NOT NULL);
"""


# A short busy timeout: contention surfaces as OperationalError, which the retrying tasks back off on.
DEFAULT_BUSY_TIMEOUT_SECONDS = 2.0


def database_path() -> Path:
    return Path(os.environ.get("APP_DATA_DIR", "/data")) / "app.sqlite3"


def busy_timeout() -> float:
    """How long a write waits for a lock held by another process (APP_STORE_BUSY_TIMEOUT seconds)."""
    return float(os.environ.get("APP_STORE_BUSY_TIMEOUT", DEFAULT_BUSY_TIMEOUT_SECONDS))


def connect() -> sqlite3.Connection:
    connection = sqlite3.connect(database_path(), timeout=busy_timeout(), isolation_level=None)
    connection.executescript(SCHEMA)
    return connection


def _changed(sql: str, params: tuple) -> bool:
    with closing(connect()) as connection:
        return connection.execute(sql, params).rowcount == 1


def activate_account(account_id: int) -> bool:
    """Mark an account active; True only the first time (running it again changes nothing)."""
    return _changed(
        "INSERT INTO accounts (account_id, active) VALUES (?, 1) "
        "ON CONFLICT(account_id) DO UPDATE SET active = 1 WHERE active = 0",
        (account_id,),
    )


def record_payment(payment_id: str, amount_cents: int, currency: str) -> bool:
    """Record a payment once per payment_id; a redelivered message is a no-op."""
    return _changed(
        "INSERT INTO payments (payment_id, amount_cents, currency) VALUES (?, ?, ?) "
        "ON CONFLICT(payment_id) DO NOTHING",
        (payment_id, amount_cents, currency),
    )


def queue_notification(notification_id: str, recipient: str, subject: str, body: str) -> bool:
    """Put a notification in the outbox once per notification_id."""
    return _changed(
        "INSERT INTO outbox (notification_id, recipient, subject, body) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(notification_id) DO NOTHING",
        (notification_id, recipient, subject, body),
    )


def set_api_token(account_id: int, token_sha256: str) -> bool:
    """Keep an account's API token (its digest only); True when it changed (the same token again changes nothing)."""
    return _changed(
        "INSERT INTO api_tokens (account_id, token_sha256) VALUES (?, ?) "
        "ON CONFLICT(account_id) DO UPDATE SET token_sha256 = excluded.token_sha256 "
        "WHERE token_sha256 != excluded.token_sha256",
        (account_id, token_sha256),
    )
