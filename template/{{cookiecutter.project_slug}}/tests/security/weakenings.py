"""Deliberately weakened stacks, one control off at a time: the suite must fail exactly that control's tests.

Two kinds, both changes to the shipped files and never a second description of the stack:

* OVERRIDES, selected with SECURITY_SUITE_WEAKEN=<name>: a compose override file layered on compose.yaml that
  mounts a replaced rabbitmq.conf or definitions file, or a patch into the workers; or a patch to the suite's own
  producer client in this process.
* COMPOSE_EDITS: an edit of compose.yaml itself, as a user might make it. The template's tests apply each one to
  a copy of a baked project and run that copy's suite unchanged.

Each entry names the controls whose tests must fail; every other control must still pass.
"""
import importlib
import json
import os
from pathlib import Path

import pytest
import yaml
from kombu.serialization import register_pickle, registry

from tests.harness.scratch import ScratchFiles, broker_config_swapped
from tools import settings
from tools.credentials import HASHING_ALGORITHM, rabbitmq_password_hash

ENVIRONMENT_VARIABLE = "SECURITY_SUITE_WEAKEN"
# Certificate login (x509 EXTERNAL) or password login: a few weakenings differ between the two.
CERTIFICATE_LOGIN = settings.load().login == "certificate"
# name -> the controls whose tests must fail under it.
EXPECTED_FAILURES = {
    "plaintext": {"TLS-01", "TLS-05"},
    "oldtls": {"TLS-02"},
    "defaultgroups": {"TLS-02"},
    # Password login: no client certificate asked for, so revocation (TLS-06) and per-identity certificates (CRED-06)
    # go with it. Certificate login cannot work without asking for one: there, a client may leave it out.
    "nopeercert": {"TLS-03"} if CERTIFICATE_LOGIN else {"TLS-03", "TLS-06", "CRED-06"},
    "nocrlcheck": {"TLS-06"},
    "nohostcheck": {"TLS-04"},
    # With certificate login guest gets in only once passwords are offered again (which CRED-07 refuses).
    "guest": {"CRED-01", "CRED-07"} if CERTIFICATE_LOGIN else {"CRED-01"},
    # "The old monitoring agent only speaks PLAIN": password login offered again beside certificates (certificate
    # login only).
    "plainlogin": {"CRED-07"},
    "crosstenant": {"CRED-02"},
    "fullperms": {"CRED-03"},
    "unboundedqueues": {"TEN-01"},
    "nouserlimits": {"TEN-02"},
    "envsecret": {"CRED-04"},
    "additivedefinitions": {"CRED-05"},
    "pickle": {"SER-01", "SER-02"},
    # "Streams are new to us": the evidence an ordinary queue again, which any reader may purge.
    "purgeableevidence": {"SER-04"},
    "pickleproducer": {"SER-03"},
    "novalidation": {"VAL-01", "VAL-02"},
    "noheaderpolicy": {"VAL-04"},
    "anytask": {"TEN-03"},
    "bigmessages": {"VAL-03"},
    # "Bind the node and the CLI to loopback" with their own argument variables, as before ERL_AFLAGS: the nodes
    # the server spawns itself (its epmd monitor's, every minute) listen on every interface again.
    "distributionargs": {"TLS-05"},
    # "Write the new pair beside the old one and rename it into place" (as `tls rotate` did before TLS-07): the
    # running broker's bind mounts keep the old files, so only a restart would ever serve the new certificate.
    "renamedrotation": {"TLS-07"},
}

# name -> (controls that must fail, [(regular expression, replacement)] applied to compose.yaml's text).
COMPOSE_EDITS = {
    # "It needs root to write there": workers as uid 0, their writable places handed to root too (root without
    # capabilities cannot write into the worker uid's /tmp or data volume, and would not start).
    "compose-root": ({"RUN-01"}, [
        (r'user: "{{ cookiecutter.worker_uid }}:{{ cookiecutter.worker_gid }}"', 'user: "0:0"'),
        (r"uid={{ cookiecutter.worker_uid }},gid={{ cookiecutter.worker_gid }}", "uid=0,gid=0"),
        (r"(- /tmp:size=64m,uid=0,gid=0,mode=0700)\n    volumes:\n      - data-\S+:/data",
         r"\1\n      - /data:size=64m,uid=0,gid=0,mode=0700")]),
    "compose-writable": ({"RUN-02"}, [(r"read_only: true", "read_only: false")]),
    "compose-capabilities": ({"RUN-03"}, [(r"cap_drop: \[ALL\]", "cap_drop: []")]),
    "compose-nolimits": ({"RUN-04"}, [(r"\n *(mem_limit|pids_limit|cpus): .*", "")]),
    "compose-publicport": ({"TLS-01"}, [(r'"127\.0\.0\.1:\$\{BROKER_TLS_PORT', '"${BROKER_TLS_PORT')]),
    # "The task needs to call an API": the workers' network no longer internal.
    "compose-egress": ({"RUN-06"}, [(r"internal: true", "internal: false")]),
    # "One certificate per tenant is simpler": each tenant's producer mounts its worker's pair (with certificate
    # login it is then logged in as the worker: it may consume and read every result). Sharing a pair across tenants
    # cannot be tried this way: with certificate login that worker is refused on the other vhost (CRED-02).
    "compose-sharedcert": ({"CRED-06"}, [(r"source: (\S+)_producer_(cert|key)", r"source: \1_worker_\2")]),
}

# Line swaps in the broker's files (its configuration, and its entry point boot.sh): {weakening: {file in broker/: {line: replacement}}}.
PLAIN_BACK_ON = {"auth_mechanisms.1 = EXTERNAL": "auth_mechanisms.1 = EXTERNAL\nauth_mechanisms.2 = PLAIN"} \
    if CERTIFICATE_LOGIN else {}
CONFIG_SWAPS = {
    "plaintext": {"rabbitmq.conf": {"listeners.tcp = none": "listeners.tcp.default = 5672"}},
    # Defence in depth would still keep guest on loopback; the weakened stack lifts that too (and offers passwords).
    "guest": {"rabbitmq.conf": {"loopback_users.guest = true": "loopback_users = none", **PLAIN_BACK_ON}},
    "plainlogin": {"rabbitmq.conf": PLAIN_BACK_ON},
    # "Our reports are bigger than 1 MiB": the limit raised 16-fold.
    "bigmessages": {"rabbitmq.conf": {"max_message_size = 1048576": "max_message_size = 16777216"}},
    # TLS 1.0 and 1.1 back on, with the CBC/SHA-1 suite they need (they have no AEAD suites), as legacy clients demand.
    "oldtls": {"advanced.config": {
        "{versions, ['tlsv1.3', 'tlsv1.2']},": "{versions, ['tlsv1.3', 'tlsv1.2', 'tlsv1.1', tlsv1]},",
        '{ciphers, ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",':
            '{ciphers, ["ECDHE-ECDSA-AES128-SHA", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", '
            '"TLS_AES_128_GCM_SHA256",'}},
    # "Erlang's defaults are fine": the explicit key-exchange groups removed, so whatever the Erlang release offers
    # is offered (on Erlang 25 that included binary curves; on 27, X448 and P-521 beyond the allowed three).
    "defaultgroups": {"advanced.config": {"{eccs, [x25519, secp256r1, secp384r1]},": "",
                                          "{supported_groups, [x25519, secp256r1, secp384r1]},": ""}},
    # "Revocation is for the web": the CRL no longer consulted, so a revoked certificate works until it expires.
    "nocrlcheck": {"advanced.config": {"{crl_check, peer},": "{crl_check, false},"}},
    # "RabbitMQ already imports the definitions at boot": the shipped entry point (broker/boot.sh) with its removal of
    # what the definitions no longer list switched off, so only the stock, additive import remains.
    "additivedefinitions": {"boot.sh": {"remove_stale() {": "remove_stale() { changes=0; }\nremove_stale_shipped() {"}},
    # "Some clients have no certificate": the broker no longer insists on one (password login: nor checks it).
    "distributionargs": {"rabbitmq-env.conf": {
        'export ERL_AFLAGS="-kernel inet_dist_use_interface {127,0,0,1}"':
            'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
            'CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"'}},
    "nopeercert": {"advanced.config": {"{fail_if_no_peer_cert, true},": "{fail_if_no_peer_cert, false},",
                                       **({} if CERTIFICATE_LOGIN else {"{verify, verify_peer},": "{verify, verify_none},"})}},
}


# sitecustomize.py bodies for the worker containers (%-formatted: this file is itself a template, so no double
# braces here).
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
# Headers believed as sent, as stock Celery does.
PATCH_NO_HEADER_POLICY = """
import %(package)s.header_policy as header_policy
header_policy.violation = lambda *args, **kwargs: None
"""
# "Any of our producers may run any of our tasks": no allow-list, as stock Celery.
PATCH_ANY_TASK = """
import %(package)s.allowlist as allowlist
allowlist.refusal = lambda *args, **kwargs: None
"""
WORKER_PATCHES = {"pickle": PATCH_PICKLE, "novalidation": PATCH_NO_VALIDATION, "nohostcheck": PATCH_NO_HOST_CHECK,
                  "noheaderpolicy": PATCH_NO_HEADER_POLICY, "anytask": PATCH_ANY_TASK}


def selected() -> str | None:
    name = os.environ.get(ENVIRONMENT_VARIABLE) or None
    if name is not None and name not in EXPECTED_FAILURES:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={name!r} is not one of {sorted(EXPECTED_FAILURES)} (the compose.yaml"
                         f" edits {sorted(COMPOSE_EDITS)} are made to compose.yaml itself, not selected here)")
    if name == "plainlogin" and not CERTIFICATE_LOGIN:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}=plainlogin weakens certificate login; this stack logs in with passwords")
    return name


class Weakening:
    """The override file of the selected weakening, and the patch of the suite's own producer."""

    def __init__(self, name: str, stack: settings.StackSettings):
        self.name, self.stack = name, stack
        self.scratch = ScratchFiles(f"weakened-{name}-")
        self.patches = pytest.MonkeyPatch()

    def override_file(self) -> Path:
        """A compose override file (in the scratch directory) holding this weakening's changes."""
        services: dict = {}
        override: dict = {"services": services}
        for name, swaps in CONFIG_SWAPS.get(self.name, {}).items():
            # broker/boot.sh is the image's entry point (and healthcheck); the rest are RabbitMQ's configuration.
            target, mode = ("/usr/local/bin/broker-boot", 0o755) if name == "boot.sh" else (f"/etc/rabbitmq/{name}", 0o644)
            config = self.scratch.write(name, broker_config_swapped(self.stack.project_dir, swaps, name), mode=mode)
            services.setdefault("broker", {"volumes": []})["volumes"].append(f"{config}:{target}:ro")
        definitions = self.definitions()
        if definitions is not None:
            override["secrets"] = {"definitions": {"file": str(self.scratch.write("definitions.json",
                                                                                   json.dumps(definitions)))}}
        for vhost in self.stack.vhosts:
            worker: dict = {}
            if self.name in WORKER_PATCHES:
                patch = self.scratch.write("sitecustomize.py", WORKER_PATCHES[self.name] % {"package": self.stack.package},
                                           mode=0o644)
                worker = {"volumes": [f"{patch}:/opt/weakened/sitecustomize.py:ro"],
                          "environment": {"PYTHONPATH": "/opt/weakened:/app"}}
            elif self.name == "envsecret":
                # The usual shortcut: the credential handed over in the environment, not only in its secret file
                # (the private key with certificate login, the password with password login).
                identity = self.stack.topology.user_name(vhost, "worker")
                if CERTIFICATE_LOGIN:
                    worker = {"environment": {"TLS_CLIENT_KEY_PEM": (self.stack.project_dir / "pki"
                                                                     / f"{identity}.key").read_text()}}
                else:
                    password = (self.stack.project_dir / "secrets" / f"{identity}.password").read_text().strip()
                    worker = {"environment": {"TASKS_BROKER_PASSWORD": password}}
            if worker:
                services[self.stack.worker_service(vhost)] = worker
        return self.scratch.write("weakening.compose.yaml", yaml.safe_dump(override, sort_keys=False))

    def definitions(self) -> dict | None:
        if self.name not in ("guest", "crosstenant", "fullperms", "unboundedqueues", "nouserlimits",
                             "purgeableevidence"):
            return None
        definitions = json.loads((self.stack.project_dir / "secrets" / "definitions.json").read_text())
        vhosts, grants = self.stack.vhosts, definitions["permissions"]
        first_producer = next(g for g in grants if g["user"] == self.stack.topology.user_name(vhosts[0], "producer"))
        if self.name == "guest":
            definitions["users"].append({"name": "guest", "password_hash": rabbitmq_password_hash("guest"),
                                         "hashing_algorithm": HASHING_ALGORITHM, "tags": ["administrator"]})
            definitions["vhosts"].append({"name": "/"})
            grants += [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
                       for vhost in ["/", *vhosts]]
        elif self.name == "crosstenant":
            # A copy-pasted grant: the first tenant's producer may also enter the next tenant's vhost.
            foreign = vhosts[1] if len(vhosts) > 1 else "/"
            definitions["vhosts"] += [{"name": "/"}] if foreign == "/" else []
            grants.append(dict(first_producer, vhost=foreign))
        elif self.name == "purgeableevidence":
            for queue in definitions["queues"]:
                if queue["name"] == self.stack.topology.DEAD_LETTER_QUEUE:
                    queue["arguments"] = {"x-queue-type": "classic", "x-max-length": 100_000, "x-overflow": "drop-head"}
        elif self.name == "fullperms":
            # The ubiquitous ".*" grant, e.g. because reply queues have unpredictable names.
            first_producer.update(configure=".*", write=".*", read=".*")
        elif self.name == "unboundedqueues":
            # "The limits got in the way of a batch job": no operator policies, the old queue limit per vhost.
            definitions["parameters"] = [p for p in definitions["parameters"] if p["component"] != "operator_policy"]
            for parameter in definitions["parameters"]:
                parameter["value"].pop("max-queues", None)
        else:
            # Users as RabbitMQ creates them: no limits of their own, only the vhost's.
            for user in definitions["users"]:
                user.pop("limits", None)
        return definitions

    def patch_producer(self) -> None:
        """The suite's own clients and tools in this process (its Celery app, the PKI tooling) are part of the test
        stack too."""
        if self.name == "renamedrotation":
            import tls.store
            self.patches.setattr(tls.store, "write_in_place",
                                 lambda path, data: tls.store.write_atomic(path, data, path.stat().st_mode & 0o777,
                                                                            overwrite=True))
        if self.name == "pickleproducer":
            # A producer that kept kombu's pickle codec and lost its JSON-only guard.
            validation = importlib.import_module(f"{self.stack.package}.validation")
            self.patches.setattr(validation, "require_json", lambda serializer: None)
            register_pickle()

    def cleanup(self) -> None:
        self.patches.undo()
        if self.name == "pickleproducer" and "pickle" in registry.name_to_type:
            registry.unregister("pickle")
        self.scratch.remove()

