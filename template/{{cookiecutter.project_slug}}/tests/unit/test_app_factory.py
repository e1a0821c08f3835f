"""The app factory: tasks import nothing that configures an app (no import cycle, nothing read from the
environment at import), and every thread's task calls go to the factory's app."""
import subprocess  # nosec B404 - runs this interpreter only
import sys
import threading

from tests.unit.unit_app import SETTINGS, app
from {{ cookiecutter.package_name }}.tasks.arithmetic import add


def test_importing_the_tasks_configures_no_app():
    """A fresh interpreter with an empty environment imports every task module; the environment-configured app
    (celery_app.py), which would refuse to start without its settings, is never imported."""
    code = ("import sys, {{ cookiecutter.package_name }}.tasks; "
            "assert '{{ cookiecutter.package_name }}.celery_app' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": "src"}, capture_output=True,  # nosec B603
                            text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_tasks_use_the_factorys_app_from_any_thread():
    """Shared tasks are proxies to Celery's current app, which it keeps per thread; a producer sending from a
    thread of its own (a web server's) must not fall back to Celery's unconfigured default app."""
    seen: dict = {}
    thread = threading.Thread(target=lambda: seen.update(app=add.app, url=add.app.conf.broker_url))
    thread.start()
    thread.join()
    assert seen["app"] is app
    assert seen["url"] == SETTINGS.url
