"""Queue names and limits: the one place the app, the broker definitions and the tests read them from."""

# Kept free of imports so host-side tooling (tools/credentials.py) can load it without Celery.

TASK_QUEUE = "tasks"                # default queue for ordinary work
PRIORITY_QUEUE = "priority"         # payments and other work that must jump the line
TASK_QUEUES = (TASK_QUEUE, PRIORITY_QUEUE)
# Producers publish tasks only through this exchange, which binds each task queue under its own name: unlike the
# default exchange it reaches nothing else (not the dead-letter evidence, not another client's reply queue). A topic
# exchange (its bindings are exact names, so it routes like a direct one) because RabbitMQ checks topic permissions
# on it: a publish with any other routing key is refused outright (topic_permissions below).
TASK_EXCHANGE = "tasks"
TASK_EXCHANGE_TYPE = "topic"
DEAD_LETTER_EXCHANGE = "dead-letters"   # refused messages (pickle, rejected) land here for forensics
# A stream, not a queue: reading it (as the auditor, from an offset) leaves it as it was, and RabbitMQ has no purge
# and no basic.get for streams, so whoever may read the evidence still cannot destroy it. Old letters leave only by
# retention (DEAD_LETTER_MAX_BYTES, whole segments at a time).
DEAD_LETTER_QUEUE = "dead-letters"
DEAD_LETTER_MAX_BYTES = 64 * 2**20
DEAD_LETTER_SEGMENT_BYTES = 4 * 2**20   # retention drops whole segments: small ones keep the bound close

MAX_PRIORITY = 10                   # x-max-priority of the priority queue
QUEUE_MAX_LENGTH = 100_000          # beyond this a publish is refused (x-overflow=reject-publish), never dropped
MAX_MESSAGE_BYTES = 1_048_576       # must match max_message_size in broker/rabbitmq.conf

VHOST_MAX_CONNECTIONS = 64          # a connection storm in one tenant cannot starve the others
VHOST_MAX_QUEUES = 32               # the task and dead-letter queues, plus one rpc reply queue per client process

ROLES = ("worker", "producer", "auditor")
# With the Flower dashboard baked in (stack.toml [monitoring] flower), each vhost also has a monitor: it reads the
# workers' task events and nothing else (MON-03).
MONITOR_ROLE = "monitor"
# Celery's event exchange (declared by the broker from definitions; workers publish to it only when the dashboard
# is baked in) and the name of each event consumer's own queue: celeryev.<uuid>.
EVENT_EXCHANGE = "celeryev"
EVENT_QUEUE_PATTERN = r"^celeryev\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Per user, inside the vhost's limits: one role holding all it may still leaves room for the others (a producer
# at its limit cannot keep its own worker from reconnecting).
USER_LIMITS = {
    "worker": {"max-connections": 8, "max-channels": 64},
    "producer": {"max-connections": 16, "max-channels": 64},
    "auditor": {"max-connections": 2, "max-channels": 8},
    "monitor": {"max-connections": 4, "max-channels": 16},    # the dashboard holds two
}
# Operator policies bound every queue of a vhost; clients cannot lift them (queue arguments and user policies only
# ever make them stricter). Worst case per vhost on the broker's disk: 3 x 64 MiB + 29 reply queues x 16 MiB.
# A reply queue holds the results of one client's tasks until it reads them: 100,000 small results fit (a batch
# of 10,000 is tested); past its bound the oldest results are dropped, never the broker.
QUEUE_MAX_BYTES = 64 * 2**20
REPLY_QUEUE_MAX_BYTES = 16 * 2**20
REPLY_QUEUE_MAX_LENGTH = QUEUE_MAX_LENGTH
REPLY_QUEUE_EXPIRES_MS = 3_600_000  # an unused reply queue goes away after an hour (results expire then too)
# A dashboard's event queue (Celery asks for a 60 s expiry and a 5 s message TTL; a monitor's key cannot ask for
# more): events that no dashboard reads in time are dropped, never piled up.
EVENT_QUEUE_MAX_LENGTH = 10_000
EVENT_QUEUE_MAX_BYTES = 4 * 2**20
EVENT_QUEUE_EXPIRES_MS = 60_000


def user_name(vhost: str, role: str) -> str:
    """The broker user of one role in one vhost: users never span tenants, so neither do their credentials."""
    return f"{vhost}-{role}"


# The roles with a user of the result store (result_backend = redis): workers store results, producers read them.
RESULT_STORE_ROLES = ("worker", "producer")


def result_key_prefix(vhost: str) -> str:
    """Every key and channel of `vhost`'s results starts with this; the result store confines the tenant's users to
    it (tools/result_store.py) and Celery puts it before each key (result_store.py, global_keyprefix)."""
    return f"{vhost}:"


def password_users(identity: str) -> tuple[str, str]:
    """Password login only: the two broker users an identity alternates between (its own name, then `<name>.b`),
    so that a new password is in place and an old one still works while clients move over (CRED-08)."""
    return identity, f"{identity}.b"


def broker_users(identity: str, passwords: bool) -> tuple[str, ...]:
    """The broker users of one identity: itself, and with password login its second user (password_users)."""
    return password_users(identity) if passwords else (identity,)

# Celery's rpc result backend names each client's reply queue after a UUID.
REPLY_QUEUE_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def queue_arguments(queue: str) -> dict:
    """Broker-side arguments of a task queue (declared by the broker from definitions, never by clients)."""
    arguments = {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-max-length": QUEUE_MAX_LENGTH,
        "x-overflow": "reject-publish",
    }
    if queue == PRIORITY_QUEUE:
        arguments["x-max-priority"] = MAX_PRIORITY
    return arguments


def dead_letter_arguments() -> dict:
    return {"x-queue-type": "stream", "x-max-length-bytes": DEAD_LETTER_MAX_BYTES,
            "x-stream-max-segment-size-bytes": DEAD_LETTER_SEGMENT_BYTES}


def operator_policies() -> list[dict]:
    """(name, pattern, definition, priority) of the operator policies every vhost gets: the reply-queue one wins
    over the catch-all for reply queues (one operator policy applies per queue, the highest priority)."""
    return [
        {"name": "bounded-reply-queues", "pattern": REPLY_QUEUE_PATTERN, "priority": 1,
         "definition": {"max-length": REPLY_QUEUE_MAX_LENGTH, "max-length-bytes": REPLY_QUEUE_MAX_BYTES,
                        "expires": REPLY_QUEUE_EXPIRES_MS}},
        {"name": "bounded-event-queues", "pattern": EVENT_QUEUE_PATTERN, "priority": 2,
         "definition": {"max-length": EVENT_QUEUE_MAX_LENGTH, "max-length-bytes": EVENT_QUEUE_MAX_BYTES,
                        "expires": EVENT_QUEUE_EXPIRES_MS}},
        {"name": "bounded-queues", "pattern": ".*", "priority": 0, "definition": {"max-length-bytes": QUEUE_MAX_BYTES}},
    ]


def topic_permissions(role: str) -> list[dict]:
    """Which routing keys a role may publish with on the task exchange: only the task queues' names."""
    if role not in ("worker", "producer"):
        return []                                   # no write on the exchange at all (permissions below)
    return [{"exchange": TASK_EXCHANGE, "write": "^(" + "|".join(TASK_QUEUES) + ")$", "read": "^$"}]


def roles(dashboard: bool) -> tuple[str, ...]:
    """The roles each vhost has: the monitor only where the dashboard is baked in."""
    return (*ROLES, MONITOR_ROLE) if dashboard else ROLES


def permissions(role: str, events: bool = False) -> dict:
    """Least-privilege configure/write/read regexes for a role inside its own vhost. `events`: the workers publish
    task events (only for the dashboard) to the event exchange, which the broker declares (app_factory.py)."""
    nothing = "^$"
    task_queues = "^(" + "|".join(TASK_QUEUES) + ")$"
    task_exchange = f"^{TASK_EXCHANGE}$"
    events_queue = EVENT_QUEUE_PATTERN[1:-1]
    table = {
        # Consumes task queues, publishes retries and chain steps (task exchange) and rpc results (the default
        # exchange, to the caller's reply queue); declares nothing (queues come from definitions).
        "worker": {"configure": nothing,
                   "write": rf"^(amq\.default|{TASK_EXCHANGE}{'|' + EVENT_EXCHANGE if events else ''})$",
                   "read": task_queues},
        # Publishes tasks through the task exchange only; may only declare and read its own rpc reply queue.
        "producer": {"configure": REPLY_QUEUE_PATTERN, "write": task_exchange, "read": REPLY_QUEUE_PATTERN},
        # Reads dead letters for forensics; nothing else.
        "auditor": {"configure": nothing, "write": nothing, "read": f"^{DEAD_LETTER_QUEUE}$"},
        # Declares its own event queue and binds it to the event exchange (which it cannot change: configure is on
        # its queue alone); publishes nowhere (no write on any exchange), reads no task queue, result or dead letter.
        "monitor": {"configure": f"^{events_queue}$", "write": f"^{events_queue}$",
                    "read": rf"^({EVENT_EXCHANGE}|{events_queue})$"},
    }
    return table[role]
