"""The Celery application factory: an app from explicit settings, secure by construction, fails closed.

The tasks (tasks/) are declared with `shared_task` and import nothing from here, so there is no import cycle:
create_app configures the app first and then imports the tasks package, which registers every task with it.
Containers get their app from celery_app.py (settings from the environment); tests build their own.
"""
import importlib

import celery.events.event
from celery import Celery
from kombu import Exchange

from . import config, logging_setup, serialization, topology  # noqa: F401  (logging_setup connects its signal handler)
from .liveness import Liveness
from .broker_settings import BrokerSettings
from .validation import RequireSchemas, ValidatedTask
{%- if cookiecutter.error_reports == "sentry" %}
from .error_reports import ErrorReports
{%- endif %}


def declare_event_exchange_passively() -> None:
    """Task events (only with the dashboard) go through an exchange the broker declares from its definitions.
    Celery re-declares it before use, which needs the configure permission, which also allows deleting it or
    declaring it anew with another type: a passive declare only checks that it is there, and needs none."""
    celery.events.event.event_exchange = Exchange(topology.EVENT_EXCHANGE, type="topic", passive=True)


def create_app(broker: BrokerSettings) -> Celery:
    # Module attributes looked up at call time, so that a weakened stack's patch of them takes effect.
    serialization.remove_unsafe_serializers()
    declare_event_exchange_passively()
    app = Celery(__package__, task_cls=ValidatedTask)
    app.config_from_object(config.build_config(broker))
    app.steps["consumer"].add(Liveness)
    app.steps["worker"].add(RequireSchemas)
{%- if cookiecutter.error_reports == "sentry" %}
    app.steps["worker"].add(ErrorReports)     # failed tasks reported to Sentry, their secrets masked (LOG-03)
{%- endif %}
    importlib.import_module(f"{__package__}.tasks")   # every task module registers its shared tasks
    # The shared tasks are proxies to "the current app", which Celery keeps per thread: without this, a call from
    # any other thread than this one (a web server's, a test's) would go to Celery's unconfigured default app.
    app.set_default()
    return app
