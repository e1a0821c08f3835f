"""Test-only worker entry point: the project's worker with remote control on, so a test can cancel and re-add
its consumers (`cancel_consumer` / `add_consumer`, what queue switching does). Remote control is off in the
project; this file is bind-mounted by tests/resilience/test_consumer_restart.py and never part of the image.

STOCK_CONSUMER=1 runs the consumer without the TLS-buffer fix (intake only), to show the stall it prevents.
"""
import os
import sys

from celery.bin.celery import main

from {{ cookiecutter.package_name }}.celery_app import app

app.conf.worker_enable_remote_control = True
if os.environ.get("STOCK_CONSUMER") == "1":
    app.conf.worker_consumer = "{{ cookiecutter.package_name }}.intake:DeadLetteringConsumer"

if __name__ == "__main__":
    # argv: the image's own command line (tests.harness.stack_under_test.shipped_worker_command) plus a node name the
    # test can address; `--app` imports the module changed above.
    sys.argv = sys.argv[1:]
    sys.exit(main())
