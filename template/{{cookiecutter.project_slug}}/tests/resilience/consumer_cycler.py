"""Test-only worker entry point: the project's worker plus a bootstep that cancels and re-adds its task-queue
consumers when /tmp/cycle-consumer appears (what remote-control cancel_consumer/add_consumer or queue
switching do; remote control is disabled in this project). Bind-mounted into a worker container by
tests/resilience/test_consumer_restart.py; never part of the image.
"""
import logging
import os
import time
from pathlib import Path

from celery import bootsteps

from {{ cookiecutter.package_name }}.celery_app import app

TRIGGER = Path("/tmp/cycle-consumer")
DRAIN_AFTER_CONSUME = os.environ.get("CYCLER_DRAIN_AFTER_CONSUME") == "1"
logger = logging.getLogger("consumer-cycler")


class ConsumerCycler(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None

    def start(self, consumer):
        self.timer_ref = consumer.timer.call_repeatedly(0.1, self.poll, (consumer,), priority=10)

    def poll(self, consumer):
        if not TRIGGER.exists():
            return
        TRIGGER.unlink()
        task_consumer = consumer.task_consumer
        queues = list(task_consumer.queues)
        for queue in queues:
            task_consumer.cancel_by_queue(queue.name)
        logger.warning("consumer-cycler: cancelled %s", [queue.name for queue in queues])
        for queue in queues:
            task_consumer.add_queue(queue)
        task_consumer.consume()
        logger.warning("consumer-cycler: re-added %s at %.3f", [queue.name for queue in queues], time.time())
        if DRAIN_AFTER_CONSUME:
            # Frames that arrived while basic.consume waited for its reply may sit decrypted in the TLS layer,
            # where the event loop's poll cannot see them: read them now.
            consumer.hub.call_soon(consumer.connection.transport.on_readable, consumer.connection, consumer.hub)

    def stop(self, consumer):
        if self.timer_ref is not None:
            self.timer_ref.cancel()


app.steps["consumer"].add(ConsumerCycler)

if __name__ == "__main__":
    app.worker_main(["worker", "--without-mingle", "--without-gossip", "--without-heartbeat", "--queues",
                     "tasks,priority", "--concurrency", os.environ.get("CYCLER_CONCURRENCY", "1"),
                     "--loglevel", "INFO"])
