"""{{ cookiecutter.project_name }}: Celery workers for a TLS-only, per-vhost, JSON-only RabbitMQ."""
