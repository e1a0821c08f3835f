"""Deliberately weakened stacks, one control off at a time: the suite must fail exactly that control's tests.

Which controls each weakening must fail is the catalog's (policies/controls.toml, `weakened_by`); this module only
says how each one is made. Two kinds, both changes to the shipped files and never a second description of the stack:

* overrides, selected with SECURITY_SUITE_WEAKEN=<name>: a compose override file layered on compose.yaml that
  mounts a replaced broker file or definitions file, or a patch into the workers; or a patch to the suite's own
  clients in this process;
* PROJECT_EDITS: an edit of a shipped file itself (compose.yaml, mostly), as a user might make it. The template's
  tests apply each one to a copy of a baked project and run that copy's suite unchanged.
"""
import importlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from celery.utils.saferepr import saferepr
from kombu.serialization import register_pickle, registry

from tests.harness.scratch import ScratchFiles, broker_config_swapped
from tools import catalog, credentials, settings
from tools.credentials import HASHING_ALGORITHM, rabbitmq_password_hash

ENVIRONMENT_VARIABLE = "SECURITY_SUITE_WEAKEN"
STACK = settings.load()
# Certificate login (x509 EXTERNAL) or password login: a few weakenings differ between the two.
CERTIFICATE_LOGIN = STACK.login == "certificate"
# name -> the controls whose tests must fail under it.
EXPECTED_FAILURES = catalog.expected_failures(STACK.login, STACK.project_dir, STACK.features)

# name -> [(file, regular expression, replacement)], applied to the file's text in a copy of the project.
PROJECT_EDITS = {
    # "It needs root to write there": workers as uid 0, their writable places handed to root too (root without
    # capabilities cannot write into the worker uid's /tmp or data volume, and would not start).
    "compose-root": [
        ("compose.yaml", r'user: "{{ cookiecutter.worker_uid }}:{{ cookiecutter.worker_gid }}"', 'user: "0:0"'),
        ("compose.yaml", r"uid={{ cookiecutter.worker_uid }},gid={{ cookiecutter.worker_gid }}", "uid=0,gid=0"),
        ("compose.yaml", r"(- /tmp:size=64m,uid=0,gid=0,mode=0700)\n    volumes:\n      - data-\S+:/data",
         r"\1\n      - /data:size=64m,uid=0,gid=0,mode=0700")],
    "compose-writable": [("compose.yaml", r"read_only: true", "read_only: false")],
    "compose-capabilities": [("compose.yaml", r"cap_drop: \[ALL\]", "cap_drop: []")],
    "compose-nolimits": [("compose.yaml", r"\n *(mem_limit|pids_limit|cpus): .*", "")],
    "compose-publicport": [("compose.yaml", r'"127\.0\.0\.1:\$\{BROKER_TLS_PORT', '"${BROKER_TLS_PORT')],
    # "The task needs to call an API": the workers' network no longer internal.
    "compose-egress": [("compose.yaml", r"internal: true", "internal: false")],
    # "One certificate per tenant is simpler": each tenant's producer mounts its worker's pair (with certificate
    # login it is then logged in as the worker: it may consume and read every result). Sharing a pair across tenants
    # cannot be tried this way: with certificate login that worker is refused on the other vhost (CRED-02).
    "compose-sharedcert": [("compose.yaml", r"source: (\S+)_producer_(cert|key)", r"source: \1_worker_\2")],
    # "A quick helper for the operators": a host-side tool that runs a command line through the shell.
    "shellout": [("tools/compose.py", r"\Z", "\n\ndef run_shell(command_line: str) -> int:\n"
                  "    import subprocess\n    return subprocess.call(command_line, shell=True)\n")],
}

# Line swaps in the broker's files (its configuration, and its entry point boot.sh): {weakening: {file in broker/: {line: replacement}}}.
PLAIN_BACK_ON = {"auth_mechanisms.1 = EXTERNAL": "auth_mechanisms.1 = EXTERNAL\nauth_mechanisms.2 = PLAIN"} \
    if CERTIFICATE_LOGIN else {}
CONFIG_SWAPS = {
    "plaintext": {"rabbitmq.conf": {"listeners.tcp = none": "listeners.tcp.default = 5672"}},
    # Defence in depth would still keep guest on loopback; the weakened stack lifts that too (and offers passwords).
    "guest": {"rabbitmq.conf": {"loopback_users.guest = true": "loopback_users = none", **PLAIN_BACK_ON}},
    # "The old monitoring agent only speaks PLAIN": password login offered again beside certificates.
    **({"plainlogin": {"rabbitmq.conf": PLAIN_BACK_ON}} if CERTIFICATE_LOGIN else {}),
    # "The broker logs too much: errors only": refused TLS handshakes, logged at notice, leave no trace.
    "quietbroker": {"rabbitmq.conf": {"log.console.level = info": "log.console.level = error"}},
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
    "nocrlcheck": {"advanced.config": {"{crl_check, true},": "{crl_check, false},"}},
    # "Checking the client's own certificate is enough": the CRL consulted for the peer only, not for its issuing
    # CA, so the root's revocation of an issuing CA no longer stops what that CA signed.
    "peercrlcheck": {"advanced.config": {"{crl_check, true},": "{crl_check, peer},"}},
    # "RabbitMQ already imports the definitions at boot": the shipped entry point (broker/boot.sh) with its removal of
    # what the definitions no longer list switched off, so only the stock, additive import remains.
    "additivedefinitions": {"boot.sh": {"remove_stale() {": "remove_stale() { changes=0; }\nremove_stale_shipped() {"}},
    # "Bind the node and the CLI to loopback" with their own argument variables, as before ERL_AFLAGS: the nodes
    # the server spawns itself (its epmd monitor's, every minute) listen on every interface again.
    "distributionargs": {"rabbitmq-env.conf": {
        'export ERL_AFLAGS="-kernel inet_dist_use_interface {127,0,0,1}"':
            'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
            'CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"'}},
    # "Prometheus cannot present a certificate": the metrics endpoint no longer asks for one.
    "metricsnocert": {"advanced.config": {"{verify, verify_peer}, {fail_if_no_peer_cert, true}, {depth, 1},":
                                          "{verify, verify_none}, {fail_if_no_peer_cert, false}, {depth, 1},"}},
    # "Our Prometheus scrapes plain HTTP": the plugin's default plaintext listener (15692, every interface) back on.
    "plainmetrics": {"rabbitmq.conf": {"prometheus.tcp.listener = none": "# prometheus.tcp.listener = none"}},
    # "Some clients have no certificate": the broker no longer insists on one (password login: nor checks it).
    "nopeercert": {"advanced.config": {"{fail_if_no_peer_cert, true},": "{fail_if_no_peer_cert, false},",
                                       **({} if CERTIFICATE_LOGIN else {"{verify, verify_peer},": "{verify, verify_none},"})}},
}


# The swaps of the metrics endpoint's lines, which only a bake with broker_metrics = tls has.
METRICS_SWAPS = {"metricsnocert", "plainmetrics"}

# Line swaps in the result store's configuration (results/redis.conf; result_backend = redis only).
RESULTS_CONFIG_SWAPS = {
    # "A local tool speaks plain Redis": a plaintext port beside the TLS one.
    "plainresults": {"port 0": "port 6380"},
    # "The certificate is one more thing to hand out; the password is enough": client certificates not asked for.
    "resultsnocert": {"tls-auth-clients yes": "tls-auth-clients no"},
    # "Reports can be large": Redis's own limit on a value (512 MB) back.
    "bigresults": {"proto-max-bulk-len 1mb": "proto-max-bulk-len 512mb"},
    # With openresults (ACL_EDITS): Redis's protected mode refuses every remote client while the default user has no
    # password ("DENIED ... protected mode"), so it is switched off too, as that error message suggests.
    "openresults": {"protected-mode yes": "protected-mode no"},
}


# Edits of the result store's users (secrets/results-users.acl): name -> edit(text of the file, stack).
def open_default_user(acl: str, stack: settings.StackSettings) -> str:
    """Redis's own default: the default user on, no password, every command and key (and protected mode off,
    RESULTS_CONFIG_SWAPS)."""
    return acl.replace("user default off resetpass resetkeys resetchannels -@all", "user default on nopass ~* &* +@all")


def shared_keyspace(acl: str, stack: settings.StackSettings) -> str:
    """"One keyspace for everyone, the prefixes keep them apart": every user's keys and channels are all of them."""
    prefixes = "|".join(re.escape(stack.topology.result_key_prefix(vhost)) for vhost in stack.vhosts)
    return re.sub(rf"(%R~|~|&)(?:{prefixes})\S*", r"\1*", acl)


def all_commands(acl: str, stack: settings.StackSettings) -> str:
    """"Listing every command is tedious": each user may run any command (on its own keys still)."""
    return "\n".join(line.split(" -@all")[0] + " +@all" if line.startswith("user ") and " on " in line else line
                     for line in acl.splitlines()) + "\n"


ACL_EDITS: dict[str, Callable[[str, settings.StackSettings], str]] = {
    "openresults": open_default_user, "sharedresults": shared_keyspace, "resultsallcommands": all_commands}


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
import %(package)s.broker_settings as broker_settings
_options = broker_settings.BrokerSettings.ssl_options
broker_settings.BrokerSettings.ssl_options = lambda self: {k: v for k, v in _options(self).items() if k != "server_hostname"}
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
# "The secrets are only in our own logs": arguments shown as sent, as stock Celery does (workers and our producer).
PATCH_NO_REDACTION = """
import %(package)s.redaction as redaction
from celery.utils.saferepr import saferepr
redaction.argument_reprs = lambda schema, args, kwargs: {"argsrepr": saferepr(args), "kwargsrepr": saferepr(kwargs)}
"""
# "Sentry scrubs what is sensitive by itself": its defaults (frame variables, every argument as received), no scrub.
PATCH_NO_SCRUBBING = """
import %(package)s.error_reports as error_reports
error_reports.scrub = lambda event, tasks: event
error_reports.COLLECTED = {}
"""
# "Our Sentry has a self-signed certificate": the SDK's certificate check off, so any server under the DSN's name
# receives the reports.
PATCH_UNVERIFIED_REPORTS = """
import sentry_sdk.transport as transport
_options = transport.HttpTransport._get_pool_options
transport.HttpTransport._get_pool_options = lambda self: dict(_options(self), cert_reqs="CERT_NONE")
"""
# "Our results are Python objects": results pickled, as Celery once did by default (the clients alike, CLIENT_PATCHES).
PATCH_RESULT_PICKLE = """
import %(package)s.result_store as result_store, %(package)s.serialization as serialization
_config = result_store.ResultStoreSettings.config
result_store.ResultStoreSettings.config = lambda self: dict(_config(self), result_serializer="pickle",
                                                            result_accept_content=["json", "pickle"])
serialization.remove_unsafe_serializers = lambda: None
"""
# The dashboards (flower = https) started with one change to the shipped launcher, src/<package>/dashboard.py:
# name -> (the statement run on that module before it serves, extra environment).
DASHBOARD_PATCHES = {
    # "The dashboard is on loopback anyway": Flower with no login, its API opened as its documentation says.
    "dashboardnoauth": ("basic_auth = lambda: []", {"FLOWER_UNAUTHENTICATED_API": "true"}),
    # "Operators want to retry and revoke from the dashboard": every Flower route back, /metrics included.
    "dashboardwritable": ("served_handlers = lambda handlers: list(handlers)", {}),
}
WORKER_PATCHES = {"pickle": PATCH_PICKLE, "novalidation": PATCH_NO_VALIDATION, "nohostcheck": PATCH_NO_HOST_CHECK,
                  "noheaderpolicy": PATCH_NO_HEADER_POLICY, "anytask": PATCH_ANY_TASK, "noredaction": PATCH_NO_REDACTION,
                  "noscrubbing": PATCH_NO_SCRUBBING, "unverifiedreports": PATCH_UNVERIFIED_REPORTS,
                  "resultpickle": PATCH_RESULT_PICKLE}


# Edits of the definitions file (secrets/definitions.json) the broker imports: name -> edit(definitions, stack).
def add_guest(definitions: dict, stack: settings.StackSettings) -> None:
    definitions["users"].append({"name": "guest", "password_hash": rabbitmq_password_hash("guest"),
                                 "hashing_algorithm": HASHING_ALGORITHM, "tags": ["administrator"]})
    definitions["vhosts"].append({"name": "/"})
    definitions["permissions"] += [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
                                   for vhost in ["/", *stack.vhosts]]


def first_producers_grant(definitions: dict, stack: settings.StackSettings) -> dict:
    user = stack.topology.user_name(stack.vhosts[0], "producer")
    return next(grant for grant in definitions["permissions"] if grant["user"] == user)


def grant_across_tenants(definitions: dict, stack: settings.StackSettings) -> None:
    """A copy-pasted grant: the first tenant's producer may also enter the next tenant's vhost."""
    foreign = stack.vhosts[1] if len(stack.vhosts) > 1 else "/"
    definitions["vhosts"] += [{"name": "/"}] if foreign == "/" else []
    definitions["permissions"].append(dict(first_producers_grant(definitions, stack), vhost=foreign))


def grant_everything(definitions: dict, stack: settings.StackSettings) -> None:
    """The ubiquitous ".*" grant, e.g. because reply queues have unpredictable names."""
    first_producers_grant(definitions, stack).update(configure=".*", write=".*", read=".*")


def unbound_queues(definitions: dict, stack: settings.StackSettings) -> None:
    """"The limits got in the way of a batch job": no operator policies, the old queue limit per vhost."""
    definitions["parameters"] = [p for p in definitions["parameters"] if p["component"] != "operator_policy"]
    for parameter in definitions["parameters"]:
        parameter["value"].pop("max-queues", None)


def drop_user_limits(definitions: dict, stack: settings.StackSettings) -> None:
    """Users as RabbitMQ creates them: no limits of their own, only the vhost's."""
    for user in definitions["users"]:
        user.pop("limits", None)


def classic_evidence_queue(definitions: dict, stack: settings.StackSettings) -> None:
    """"Streams are new to us": the evidence an ordinary queue again, which any reader may purge."""
    for queue in definitions["queues"]:
        if queue["name"] == stack.topology.DEAD_LETTER_QUEUE:
            queue["arguments"] = {"x-queue-type": "classic", "x-max-length": 100_000, "x-overflow": "drop-head"}


DEFINITION_EDITS: dict[str, Callable[[dict, settings.StackSettings], None]] = {
    "guest": add_guest, "crosstenant": grant_across_tenants, "fullperms": grant_everything,
    "unboundedqueues": unbound_queues, "nouserlimits": drop_user_limits, "purgeableevidence": classic_evidence_queue}


# Patches of the suite's own clients and tools in this process (its Celery app, the PKI tooling), which are part of
# the stack under test too: name -> patch(monkeypatch, stack).
def rotate_by_rename(patches: pytest.MonkeyPatch, stack: settings.StackSettings) -> None:
    """"Write the new pair beside the old one and rename it into place" (as `tls rotate` did before TLS-07): the
    running broker's bind mounts keep the old files, so only a restart would ever serve the new certificate."""
    import tls.pki_directory
    patches.setattr(tls.pki_directory, "write_in_place",
                    lambda path, data: tls.pki_directory.write_atomic(path, data, path.stat().st_mode & 0o777, overwrite=True))


def producer_with_pickle(patches: pytest.MonkeyPatch, stack: settings.StackSettings) -> None:
    """A producer that kept kombu's pickle codec and lost its JSON-only guard."""
    validation = importlib.import_module(f"{stack.package}.validation")
    patches.setattr(validation, "require_json", lambda serializer: None)
    register_pickle()


def producer_without_redaction(patches: pytest.MonkeyPatch, stack: settings.StackSettings) -> None:
    redaction = importlib.import_module(f"{stack.package}.redaction")
    patches.setattr(redaction, "argument_reprs",
                    lambda schema, args, kwargs: {"argsrepr": saferepr(args), "kwargsrepr": saferepr(kwargs)})


def results_without_host_check(patches: pytest.MonkeyPatch, stack: settings.StackSettings) -> None:
    """"The store's certificate says `results`, we reach it by address": its clients no longer check the name."""
    module = importlib.import_module(f"{stack.package}.result_store")
    shipped = module.ResultStoreSettings.config
    patches.setattr(module.ResultStoreSettings, "config", lambda self: _with_tls(shipped(self), ssl_check_hostname=False))


def results_in_pickle(patches: pytest.MonkeyPatch, stack: settings.StackSettings) -> None:
    """"Our results are Python objects": results pickled and unpickled, as Celery once did by default (the workers
    alike, WORKER_PATCHES)."""
    module = importlib.import_module(f"{stack.package}.result_store")
    serialization = importlib.import_module(f"{stack.package}.serialization")
    shipped = module.ResultStoreSettings.config
    patches.setattr(module.ResultStoreSettings, "config", lambda self: dict(
        shipped(self), result_serializer="pickle", result_accept_content=["json", "pickle"]))
    patches.setattr(serialization, "remove_unsafe_serializers", lambda: None)
    register_pickle()


def _with_tls(config: dict, **options) -> dict:
    return dict(config, redis_backend_use_ssl=dict(config["redis_backend_use_ssl"], **options))


def rotate_one_password(patches: pytest.MonkeyPatch, stack: settings.StackSettings) -> None:
    """The usual password rotation: one user per identity, whose password changes at once (no second user)."""
    patches.setattr(credentials, "other_user", lambda users, current: current)


CLIENT_PATCHES: dict[str, Callable[[pytest.MonkeyPatch, settings.StackSettings], None]] = {
    "renamedrotation": rotate_by_rename, "pickleproducer": producer_with_pickle,
    "noredaction": producer_without_redaction, "singleslot": rotate_one_password,
    "resultsnohostcheck": results_without_host_check, "resultpickle": results_in_pickle}
# The usual shortcut: a worker's credential handed over in its environment, not only in its secret file (the
# private key with certificate login, the password with password login).
ENVIRONMENT_SECRETS = {"envsecret"}

# Every weakening this module can make; the catalog's test checks it against the catalog's `weakened_by`.
IMPLEMENTED = {*PROJECT_EDITS, *CONFIG_SWAPS, *WORKER_PATCHES, *DEFINITION_EDITS, *CLIENT_PATCHES, *ENVIRONMENT_SECRETS,
               *DASHBOARD_PATCHES, *RESULTS_CONFIG_SWAPS, *ACL_EDITS}


def selected() -> str | None:
    name = os.environ.get(ENVIRONMENT_VARIABLE) or None
    overrides = sorted(set(EXPECTED_FAILURES) - set(PROJECT_EDITS))
    if name is not None and name not in overrides:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={name!r} is not one of {overrides} for this bake (the edits "
                         f"{sorted(PROJECT_EDITS)} are made to the shipped files themselves, not selected here)")
    return name


class Weakening:
    """The override file of the selected weakening, and the patch of the suite's own clients."""

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
        if self.name in RESULTS_CONFIG_SWAPS:
            config = self.scratch.write("redis.conf", broker_config_swapped(
                self.stack.project_dir, RESULTS_CONFIG_SWAPS[self.name], "redis.conf", directory="results"), mode=0o644)
            services[self.stack.results_host] = {"volumes": [f"{config}:/etc/results/redis.conf:ro"]}
        if self.name in ACL_EDITS:
            path = self.stack.project_dir / "secrets" / "results-users.acl"
            acl = self.scratch.write("results-users.acl", ACL_EDITS[self.name](path.read_text(), self.stack))
            override["secrets"] = {"results_users": {"file": str(acl)}}
        if self.name in DEFINITION_EDITS:
            definitions = json.loads((self.stack.project_dir / "secrets" / "definitions.json").read_text())
            DEFINITION_EDITS[self.name](definitions, self.stack)
            override["secrets"] = {"definitions": {"file": str(self.scratch.write("definitions.json",
                                                                                   json.dumps(definitions)))}}
        for vhost in self.stack.vhosts:
            worker: dict = {}
            if self.name in WORKER_PATCHES:
                patch = self.scratch.write("sitecustomize.py", WORKER_PATCHES[self.name] % {"package": self.stack.package},
                                           mode=0o644)
                worker = {"volumes": [f"{patch}:/opt/weakened/sitecustomize.py:ro"],
                          "environment": {"PYTHONPATH": "/opt/weakened:/app"}}
            elif self.name in ENVIRONMENT_SECRETS:
                identity = self.stack.topology.user_name(vhost, "worker")
                if CERTIFICATE_LOGIN:
                    worker = {"environment": {"TLS_CLIENT_KEY_PEM": (self.stack.project_dir / "pki"
                                                                     / f"{identity}.key").read_text()}}
                else:
                    _, password = credentials.read_credential(
                        credentials.password_path(self.stack.project_dir / "secrets", identity))
                    worker = {"environment": {"TASKS_BROKER_PASSWORD": password}}
            if worker:
                services[self.stack.worker_service(vhost)] = worker
            if self.name in DASHBOARD_PATCHES:
                module, (statement, environment) = f"{self.stack.package}.dashboard", DASHBOARD_PATCHES[self.name]
                services[self.stack.dashboard_service(vhost)] = {"environment": environment, "command": [
                    "python3", "-c", f"import sys, {module} as d; d.{statement}; sys.exit(d.serve())"]}
        return self.scratch.write("weakening.compose.yaml", yaml.safe_dump(override, sort_keys=False))

    def patch_clients(self) -> None:
        if self.name in CLIENT_PATCHES:
            CLIENT_PATCHES[self.name](self.patches, self.stack)

    def cleanup(self) -> None:
        self.patches.undo()
        if self.name in ("pickleproducer", "resultpickle") and "pickle" in registry.name_to_type:
            registry.unregister("pickle")
        self.scratch.remove()
