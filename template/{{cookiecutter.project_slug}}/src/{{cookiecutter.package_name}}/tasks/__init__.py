"""The example tasks, one module per concern; importing this package registers them all."""
from . import accounts, arithmetic, notifications, payments, reports, text  # noqa: F401
