"""Deliberately weakened stacks, one control off at a time, to prove the suite fails when a control breaks.

Selected with SECURITY_SUITE_WEAKEN=<name>; never used by the project itself. Each weakening changes only
the test stack (an extra mounted file or a container option), never the shipped code or images.
"""
import json
import os
from pathlib import Path

from tests.security.mounts import ScratchFiles, broker_config_with, remount
from tools.credentials import rabbitmq_password_hash

ENVIRONMENT_VARIABLE = "SECURITY_SUITE_WEAKEN"
# Which controls' tests must fail under each weakening (and every other test must still pass).
EXPECTED_FAILURES = {
    "plaintext": {"TLS-01", "TLS-05"},
    "guest": {"CRED-01"},
    "pickle": {"SER-01", "SER-02"},
    "novalidation": {"VAL-01", "VAL-02"},
    "root": {"RUN-01"},
    "caps": {"RUN-03"},
}

# sitecustomize.py bodies (%-formatted: this file is itself a template, so no double braces here).
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


def selected() -> str | None:
    name = os.environ.get(ENVIRONMENT_VARIABLE) or None
    if name is not None and name not in EXPECTED_FAILURES:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={name!r} is not one of {sorted(EXPECTED_FAILURES)}")
    return name


class Weakening:
    """Applies the selected weakening to container definitions built by tests.security.stack.Stack."""

    def __init__(self, name: str | None, project_dir: Path, settings: dict):
        self.name, self.project_dir, self.settings = name, project_dir, settings
        self.scratch = ScratchFiles(f"weakened-{name}-") if name else None

    def broker(self, container) -> None:
        if self.name == "plaintext":
            # A conf.d file cannot undo `listeners.tcp = none`, so the whole rabbitmq.conf is replaced.
            self.replace_config(container, "listeners.tcp = none", "listeners.tcp.default = 5672")
        elif self.name == "guest":
            # Defence in depth would still keep guest on loopback; the weakened stack lifts that too.
            self.replace_config(container, "loopback_users.guest = true", "loopback_users = none")
            definitions = json.loads((self.project_dir / "secrets" / "definitions.json").read_text())
            definitions["users"].append({"name": "guest", "password_hash": rabbitmq_password_hash("guest"),
                                         "hashing_algorithm": "rabbit_password_hashing_sha256",
                                         "tags": ["administrator"]})
            definitions["vhosts"].append({"name": "/"})
            for vhost in ["/", *self.settings["workers"]["vhosts"]]:
                definitions["permissions"].append({"user": "guest", "vhost": vhost, "configure": ".*",
                                                   "write": ".*", "read": ".*"})
            weak = self.scratch.write("definitions.json", json.dumps(definitions), owner=(999, 999))
            remount(container, weak, "/run/secrets/definitions.json")

    def worker(self, container, kwargs: dict) -> dict:
        package = self.settings["package"]
        if self.name in ("pickle", "novalidation"):
            patch = (PATCH_PICKLE if self.name == "pickle" else PATCH_NO_VALIDATION) % {"package": package}
            site = self.scratch.write("sitecustomize.py", patch, owner=(0, 0), mode=0o644)
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
        return kwargs

    def replace_config(self, container, line: str, replacement: str) -> None:
        config = broker_config_with(self.project_dir, line, replacement)
        remount(container, self.scratch.write("rabbitmq.conf", config, owner=(999, 999), mode=0o644),
                "/etc/rabbitmq/rabbitmq.conf")

    def cleanup(self) -> None:
        if self.scratch:
            self.scratch.remove()
