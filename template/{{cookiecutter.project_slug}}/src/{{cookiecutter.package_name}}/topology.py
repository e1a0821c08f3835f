"""Queue names and limits: the one place the app, the broker definitions and the tests read them from."""

# Kept free of imports so host-side tooling (tools/credentials.py) can load it without Celery.

TASK_QUEUE = "tasks"                # default queue for ordinary work
PRIORITY_QUEUE = "priority"         # payments and other work that must jump the line
TASK_QUEUES = (TASK_QUEUE, PRIORITY_QUEUE)
DEAD_LETTER_EXCHANGE = "dead-letters"   # refused messages (pickle, rejected) land here for forensics
DEAD_LETTER_QUEUE = "dead-letters"

MAX_PRIORITY = 10                   # x-max-priority of the priority queue
QUEUE_MAX_LENGTH = 100_000          # beyond this a publish is refused (x-overflow=reject-publish), never dropped
DEAD_LETTER_MAX_LENGTH = 100_000
MAX_MESSAGE_BYTES = 1_048_576       # must match max_message_size in broker/rabbitmq.conf

VHOST_MAX_CONNECTIONS = 64          # a connection storm in one tenant cannot starve the others
VHOST_MAX_QUEUES = 256

ROLES = ("worker", "producer", "auditor")


def user_name(vhost: str, role: str) -> str:
    """The broker user of one role in one vhost: users never span tenants, so neither do their credentials."""
    return f"{vhost}-{role}"

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


def permissions(role: str) -> dict:
    """Least-privilege configure/write/read regexes for a role inside its own vhost."""
    nothing = "^$"
    task_queues = "^(" + "|".join(TASK_QUEUES) + ")$"
    default_exchange = r"^amq\.default$"   # Celery publishes tasks and rpc results through it
    table = {
        # Consumes task queues, publishes results/retries; declares nothing (queues come from definitions).
        "worker": {"configure": nothing, "write": default_exchange, "read": task_queues},
        # Publishes tasks; may only declare and read its own rpc reply queue; cannot consume tasks.
        "producer": {"configure": REPLY_QUEUE_PATTERN, "write": default_exchange, "read": REPLY_QUEUE_PATTERN},
        # Reads dead letters for forensics; nothing else.
        "auditor": {"configure": nothing, "write": nothing, "read": f"^{DEAD_LETTER_QUEUE}$"},
    }
    return table[role]
