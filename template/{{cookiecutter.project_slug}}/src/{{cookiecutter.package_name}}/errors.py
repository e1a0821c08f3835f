"""Exceptions and their messages, kept as named constants so tests and docs can quote them."""

PLAINTEXT_BROKER = "refusing to start: broker URL scheme is {scheme!r}; only 'amqps://' (TLS) is allowed"
CREDENTIAL_IN_URL = "refusing to start: the broker URL carries a password; put it in the password file instead"
MISSING_SETTING = "refusing to start: environment variable {name} is not set"
MISSING_FILE = "refusing to start: {what} file {path} does not exist or is not readable"
MALFORMED_CREDENTIAL_FILE = ('refusing to start: the broker credential file {path} is empty or not a JSON object '
                             'with a "user" and a "password" (python -m tools.credentials writes it)')
FOREIGN_CREDENTIAL_FILE = ("refusing to start: the broker credential file {path} is for user {user!r}, not one of "
                           "{identity}'s {users}")
UNSAFE_SERIALIZER = "refusing to use serializer {name!r}: only JSON is accepted"
MISSING_SCHEMA = ("task {name!r} declares no input schema ({reason}); every task must validate its arguments: "
                  "annotate each parameter with a bounded type")
SCHEMA_MISMATCH = "task {name!r}: schema fields {fields} do not match the task parameters {params}"
OVERRIDE_VARIABLE = ("refusing to start: {name} is set; Celery would use it instead of the checked TLS settings "
                     "(use TASKS_BROKER_URL)")
UNKNOWN_QUEUES = "refusing to start: {name} names {unknown}, which are not task queues (known: {known})"
UNKNOWN_LOGIN = "refusing to start: TASKS_BROKER_LOGIN {value!r} is not one of 'certificate', 'password'"
UNKNOWN_BACKEND = "refusing to start: TASKS_RESULT_BACKEND {value!r} is not one of 'rpc', 'none', 'redis'"
PLAINTEXT_RESULT_STORE = ("refusing to start: result store URL scheme is {scheme!r}; only 'rediss://' (TLS) is "
                          "allowed")
RESULT_STORE_URL = ("refusing to start: the result store URL {url!r} must be rediss://<identity>@<host>:<port>/<db>, "
                    "without a password (that is in its file)")
PLAINTEXT_DSN = ("refusing to start: the error reports DSN in {path} is {scheme!r}, not 'https'; reports would "
                 "cross the network in clear text")
UNREADABLE_CA = ("refusing to start: {path} holds no CA certificate in PEM; put the self-hosted Sentry's CA there, "
                 "or empty it")
NOT_A_FLAG = "refusing to start: {name} is {value!r}; it must be 'true' or 'false'"


class ImproperlyConfigured(RuntimeError):
    """The app's configuration would weaken a security control; it refuses to run."""


class InvalidTaskArguments(ValueError):
    """A task's arguments do not match its schema; raised before the task body runs, never retried."""
