"""Test-only worker entry point: the project's worker with remote control on, so a test can cancel and re-add
its consumers (`cancel_consumer` / `add_consumer`, what queue switching does). Remote control is off in the
project; this file is bind-mounted by tests/resilience/test_consumer_restart.py and never part of the image.

STOCK_CONSUMER=1 runs the consumer without the TLS-buffer fix (intake only), to show the stall it prevents.
"""
import os

from {{ cookiecutter.package_name }}.celery_app import app

app.conf.worker_enable_remote_control = True
if os.environ.get("STOCK_CONSUMER") == "1":
    app.conf.worker_consumer = "{{ cookiecutter.package_name }}.intake:DeadLetteringConsumer"

if __name__ == "__main__":
    # The image's own command line (docker/worker/Dockerfile), plus a node name the test can address.
    app.worker_main(["worker", "--without-mingle", "--without-gossip", "--without-heartbeat", "--queues",
                     "tasks,priority", "--concurrency", "2", "--hostname", os.environ["NODE_NAME"],
                     "--loglevel", "INFO"])
