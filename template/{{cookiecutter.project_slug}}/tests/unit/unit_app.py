"""The project's app as the unit tests build it: the factory, given settings that point at throwaway files (no
broker is ever contacted), so that no test depends on the environment it was started from."""
import tempfile
from pathlib import Path

from {{ cookiecutter.package_name }}.app_factory import create_app
from {{ cookiecutter.package_name }}.broker_settings import BrokerSettings
{%- if cookiecutter.result_backend == "redis" %}
from {{ cookiecutter.package_name }}.result_store import ResultStoreSettings
{%- endif %}

FILES = Path(tempfile.mkdtemp(prefix="unit-secrets-"))
for _name in ("ca.crt", "client.crt", "client.key"):
    (FILES / _name).write_text("placeholder, never used to connect in unit tests\n")
(FILES / "results_password").write_text('{"user": "unit-producer", "password": "unit-test-password"}\n')
SETTINGS = BrokerSettings(url="amqps://unit-producer@{{ cookiecutter.broker_host }}:5671/unit", login="certificate",
                          password_file=None, ca_file=FILES / "ca.crt", cert_file=FILES / "client.crt",
                          key_file=FILES / "client.key", result_backend="{{ cookiecutter.result_backend }}",
                          tls_server_name="{{ cookiecutter.broker_host }}"{% if cookiecutter.result_backend == "redis" %},
                          result_store=ResultStoreSettings("rediss://unit-producer@results:6379/0",
                                                           FILES / "results_password", "unit", FILES / "ca.crt",
                                                           FILES / "client.crt", FILES / "client.key"){% endif %})
app = create_app(SETTINGS)
