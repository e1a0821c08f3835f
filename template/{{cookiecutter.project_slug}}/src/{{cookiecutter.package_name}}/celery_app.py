"""The app the containers run (`celery --app {{ cookiecutter.package_name }}.celery_app worker`, the demo producer):
configured from the container's environment and secret files (broker_settings.py)."""
from .app_factory import create_app
from .broker_settings import BrokerSettings

app = create_app(BrokerSettings.from_env())
