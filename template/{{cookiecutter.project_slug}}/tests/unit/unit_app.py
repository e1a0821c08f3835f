"""The project's app as the unit tests build it: the factory, given settings that point at throwaway files (no
broker is ever contacted), so that no test depends on the environment it was started from."""
import tempfile
from pathlib import Path

from {{ cookiecutter.package_name }}.app_factory import create_app
from {{ cookiecutter.package_name }}.broker_settings import BrokerSettings

FILES = Path(tempfile.mkdtemp(prefix="unit-secrets-"))
for _name in ("ca.crt", "client.crt", "client.key"):
    (FILES / _name).write_text("placeholder, never used to connect in unit tests\n")
SETTINGS = BrokerSettings(url="amqps://unit-producer@{{ cookiecutter.broker_host }}:5671/unit", login="certificate",
                          password_file=None, ca_file=FILES / "ca.crt", cert_file=FILES / "client.crt",
                          key_file=FILES / "client.key", result_backend="{{ cookiecutter.result_backend }}",
                          tls_server_name="{{ cookiecutter.broker_host }}")
app = create_app(SETTINGS)
