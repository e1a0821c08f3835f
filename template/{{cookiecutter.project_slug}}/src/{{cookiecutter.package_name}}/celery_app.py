"""The Celery application: configured from the environment, secure by construction, fails closed."""
from celery import Celery

from . import logging_setup  # noqa: F401  (connects the structured-logging signal handler)
from .config import build_config
from .liveness import Liveness
from .serialization import remove_unsafe_serializers
from .settings import BrokerSettings
from .validation import RequireSchemas, ValidatedTask

remove_unsafe_serializers()
app = Celery("{{ cookiecutter.package_name }}", task_cls=ValidatedTask)
app.config_from_object(build_config(BrokerSettings.from_env()))
app.steps["consumer"].add(Liveness)
app.steps["worker"].add(RequireSchemas)

from . import tasks  # noqa: E402,F401  (registers the tasks on `app`)
