"""Deliberately weakened stacks, one control off at a time, to prove the suite fails when a control breaks.

Selected with SECURITY_SUITE_WEAKEN=<name>; never used by the project itself. Each weakening changes only
the test stack (an extra mounted file, a container option, or a patch to the suite's own producer client in
this process), never the shipped code or images.
"""
import importlib
import json
import os
from pathlib import Path

import pytest
from kombu.serialization import register_pickle, registry

from tests.security.mounts import ScratchFiles, broker_config_swapped, remount
from tools.credentials import rabbitmq_password_hash

ENVIRONMENT_VARIABLE = "SECURITY_SUITE_WEAKEN"
# Which controls' tests must fail under each weakening (and every other test must still pass).
EXPECTED_FAILURES = {
    "plaintext": {"TLS-01", "TLS-05"},
    "oldtls": {"TLS-02"},
    "nopeercert": {"TLS-03"},
    "nohostcheck": {"TLS-04"},
    "guest": {"CRED-01"},
    "crosstenant": {"CRED-02"},
    "fullperms": {"CRED-03"},
    "envsecret": {"CRED-04"},
    "pickle": {"SER-01", "SER-02"},
    "pickleproducer": {"SER-03"},
    "novalidation": {"VAL-01", "VAL-02"},
    "bigmessages": {"VAL-03"},
    "root": {"RUN-01"},
    "writable": {"RUN-02"},
    "caps": {"RUN-03"},
    "nolimits": {"RUN-04"},
}

# Whole-line swaps in the broker's rabbitmq.conf (a conf.d file cannot undo e.g. `listeners.tcp = none`,
# so the whole file is replaced).
CONFIG_SWAPS = {
    "plaintext": {"listeners.tcp = none": "listeners.tcp.default = 5672"},
    # Defence in depth would still keep guest on loopback; the weakened stack lifts that too.
    "guest": {"loopback_users.guest = true": "loopback_users = none"},
    # TLS 1.1 back on, with the CBC/SHA-1 suite it needs (TLS 1.1 has no AEAD suites), as legacy clients demand.
    "oldtls": {"ssl_options.honor_cipher_order = true": "ssl_options.honor_cipher_order = true\n"
               "ssl_options.versions.3 = tlsv1.1\nssl_options.ciphers.10 = ECDHE-ECDSA-AES128-SHA"},
    # Password-only clients: the broker neither asks for nor checks a client certificate.
    "nopeercert": {"ssl_options.verify = verify_peer": "ssl_options.verify = verify_none",
                   "ssl_options.fail_if_no_peer_cert = true": "ssl_options.fail_if_no_peer_cert = false"},
    # "Our reports are bigger than 1 MiB": the limit raised 16-fold.
    "bigmessages": {"max_message_size = 1048576": "max_message_size = 16777216"},
}

# sitecustomize.py bodies for the worker containers (%-formatted: this file is itself a template, so no
# double braces here).
PATCH_PICKLE = """
import %(package)s.config as config, %(package)s.serialization as serialization
_build = config.build_config
config.build_config = lambda broker: dict(_build(broker), accept_content=["json", "pickle"])
serialization.remove_unsafe_serializers = lambda: None
"""
PATCH_NO_VALIDATION = """
import %(package)s.validation as validation
validation.validate_arguments = lambda name, schema, args, kwargs: dict(zip(schema.model_fields, args), **kwargs)
"""
# Without server_hostname py-amqp accepts a project-CA certificate issued for any name.
PATCH_NO_HOST_CHECK = """
import %(package)s.settings as settings
_options = settings.BrokerSettings.ssl_options
settings.BrokerSettings.ssl_options = lambda self: {k: v for k, v in _options(self).items() if k != "server_hostname"}
"""
WORKER_PATCHES = {"pickle": PATCH_PICKLE, "novalidation": PATCH_NO_VALIDATION, "nohostcheck": PATCH_NO_HOST_CHECK}


def selected() -> str | None:
    name = os.environ.get(ENVIRONMENT_VARIABLE) or None
    if name is not None and name not in EXPECTED_FAILURES:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={name!r} is not one of {sorted(EXPECTED_FAILURES)}")
    return name


class Weakening:
    """Applies the selected weakening to container definitions built by tests.security.stack.Stack, and to
    the suite's own producer (conftest's celery_client)."""

    def __init__(self, name: str | None, project_dir: Path, settings: dict):
        self.name, self.project_dir, self.settings = name, project_dir, settings
        self.scratch = ScratchFiles(f"weakened-{name}-") if name else None
        self.patches = pytest.MonkeyPatch()

    def broker(self, container) -> None:
        if self.name in CONFIG_SWAPS:
            config = broker_config_swapped(self.project_dir, CONFIG_SWAPS[self.name])
            remount(container, self.scratch.write("rabbitmq.conf", config, owner=(999, 999), mode=0o644),
                    "/etc/rabbitmq/rabbitmq.conf")
        definitions = json.loads((self.project_dir / "secrets" / "definitions.json").read_text())
        vhosts, users, grants = self.settings["workers"]["vhosts"], definitions["users"], definitions["permissions"]
        first_producer = next(grant for grant in grants if grant["user"] == f"{vhosts[0]}-producer")
        if self.name == "guest":
            users.append({"name": "guest", "password_hash": rabbitmq_password_hash("guest"),
                          "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]})
            definitions["vhosts"].append({"name": "/"})
            grants += [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
                       for vhost in ["/", *vhosts]]
        elif self.name == "crosstenant":
            # A copy-pasted grant: the first tenant's producer may also enter the next tenant's vhost.
            foreign = vhosts[1] if len(vhosts) > 1 else "/"
            definitions["vhosts"] += [{"name": "/"}] if foreign == "/" else []
            grants.append(dict(first_producer, vhost=foreign))
        elif self.name == "fullperms":
            # The ubiquitous ".*" grant, e.g. because reply queues have unpredictable names.
            first_producer.update(configure=".*", write=".*", read=".*")
        else:
            return
        weak = self.scratch.write("definitions.json", json.dumps(definitions), owner=(999, 999))
        remount(container, weak, "/run/secrets/definitions.json")

    def worker(self, container, kwargs: dict) -> dict:
        package = self.settings["package"]
        if self.name in WORKER_PATCHES:
            site = self.scratch.write("sitecustomize.py", WORKER_PATCHES[self.name] % {"package": package},
                                      owner=(0, 0), mode=0o644)
            container.with_volume_mapping(str(site), "/opt/weakened/sitecustomize.py", "ro")
            container.with_env("PYTHONPATH", "/opt/weakened:/app")
        elif self.name == "root":
            kwargs["user"] = "0:0"
            for path in ("/tmp", "/data"):
                container.tmpfs[path] = "size=64m,uid=0,gid=0,mode=0700"
            # root without capabilities cannot read files owned by the worker uid: hand it root-owned copies.
            remapped = {}
            for host, mount in container.volumes.items():
                copy = self.scratch.write(f"root-{Path(host).name}", Path(host).read_text(), owner=(0, 0))
                remapped[str(copy)] = mount
            container.volumes = remapped
        elif self.name == "caps":
            kwargs.pop("cap_drop", None)
        elif self.name == "writable":
            kwargs["read_only"] = False
        elif self.name == "nolimits":
            kwargs.pop("mem_limit", None)
            kwargs.pop("pids_limit", None)
        elif self.name == "envsecret":
            # The usual shortcut: the password handed over in the environment, not only in its secret file.
            password = next(host for host, mount in container.volumes.items()
                            if mount["bind"] == "/run/secrets/broker_password")
            container.with_env("TASKS_BROKER_PASSWORD", Path(password).read_text().strip())
        return kwargs

    def producer(self) -> None:
        """The suite's own producer (this process's celery app) is part of the test stack too."""
        if self.name == "pickleproducer":
            # A producer that kept kombu's pickle codec and lost its JSON-only guard.
            validation = importlib.import_module(f"{self.settings['package']}.validation")
            self.patches.setattr(validation, "require_json", lambda serializer: None)
            register_pickle()

    def cleanup(self) -> None:
        self.patches.undo()
        if self.name == "pickleproducer" and "pickle" in registry.name_to_type:
            registry.unregister("pickle")
        if self.scratch:
            self.scratch.remove()
