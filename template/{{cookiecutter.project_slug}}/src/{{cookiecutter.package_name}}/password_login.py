"""Password login (bake option broker_login = password): the credential is read from its file at every connection.

`python -m tools.credentials rotate` rewrites the file with the identity's other broker user and a new password
(CRED-08); a client picks it up at its next connection, with no restart. The file holds one JSON object,
{"user": ..., "password": ...}, so that the user and its password always change together."""
import json
import time
from pathlib import Path

from amqp.sasl import AMQPLAIN

from . import errors, topology

# The rotation rewrites the file in place (compose mounts a file by inode), so a read can fall between the
# truncation and the write: a few short retries bridge that, and a file that stays wrong is an error.
READ_ATTEMPTS = 5
READ_PAUSE_SECONDS = 0.1


def parse_credential(text: str, path: Path, identity: str, users: tuple[str, ...] | None = None) -> tuple[str, str]:
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if not (isinstance(entry, dict) and isinstance(entry.get("user"), str) and isinstance(entry.get("password"), str)
            and entry["password"]):
        raise errors.ImproperlyConfigured(errors.MALFORMED_CREDENTIAL_FILE.format(path=path))
    users = topology.password_users(identity) if users is None else users
    if entry["user"] not in users:
        raise errors.ImproperlyConfigured(errors.FOREIGN_CREDENTIAL_FILE.format(path=path, user=entry["user"],
                                                                               identity=identity, users=users))
    return entry["user"], entry["password"]


def read_credential(path: Path, identity: str, users: tuple[str, ...] | None = None) -> tuple[str, str]:
    """(user, password) of `identity` from its credential file, the user one of `users` (for the broker, by default,
    topology.password_users(identity))."""
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return parse_credential(path.read_text(encoding="utf-8"), path, identity, users)
        except (OSError, errors.ImproperlyConfigured):
            time.sleep(READ_PAUSE_SECONDS)
    return parse_credential(path.read_text(encoding="utf-8"), path, identity, users)      # the last attempt raises


class PasswordFileLogin(AMQPLAIN):
    """AMQPLAIN with the user and password the credential file holds when the connection starts: py-amqp asks the
    mechanism for its response once per connection, so every reconnection reads the file again. One instance
    serves all of a process's connections, so each response is built apart (no state shared between threads)."""

    __slots__ = ("path", "identity")

    def __init__(self, path: Path, identity: str):
        super().__init__(None, None)
        self.path, self.identity = path, identity

    def start(self, connection):
        return AMQPLAIN(*read_credential(self.path, self.identity)).start(connection)
