"""The worker's consumer (`worker_consumer`): Celery's own, with the project's two fixes, one module each."""
from .intake import DeadLetteringConsumer
from .tls_buffer import DrainsTLSBuffer


class WorkerConsumer(DrainsTLSBuffer, DeadLetteringConsumer):
    """Dead-letters what it cannot run (intake.py) and never idles on decrypted TLS bytes (tls_buffer.py)."""
