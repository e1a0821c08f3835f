"""Finish the baked project: shared tooling, PKI, per-vhost secrets. Secrets are made here, never in
cookiecutter.json, so they cannot reach cookiecutter's replay file."""
import os
import shutil
import sys
from pathlib import Path

PROJECT = Path.cwd()
REPO_ROOT = Path({{ cookiecutter._repo_dir | tojson }}).resolve().parent
BROKER_HOST = {{ cookiecutter.broker_host | tojson }}
APP_OWNER = (int({{ cookiecutter.worker_uid | tojson }}), int({{ cookiecutter.worker_gid | tojson }}))
BROKER_OWNER = (999, 999)    # the rabbitmq user of the official image and of the stand-in
CLIENT_ROLES = ["worker", "producer", "auditor"]
SHARED_SOURCES = ("tls", "policies")   # single source in the template repo, copied into each project


def fail(sentence):
    print(f"ERROR: {sentence}", file=sys.stderr)
    sys.exit(1)


def copy_shared_sources():
    for name in SHARED_SOURCES:
        source = REPO_ROOT / name
        if not source.is_dir():
            fail(f"the template repository at {REPO_ROOT} has no {name}/ directory; use a complete checkout.")
        shutil.copytree(source, PROJECT / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                               ".pytest_cache"))


def key_owners():
    """Who must be able to read each private key inside its container (only root can chown)."""
    if os.geteuid() != 0:
        print("WARNING: not baking as root, so keys and passwords stay owned by you. Before starting the "
              f"stack run: sudo chown {BROKER_OWNER[0]}:{BROKER_OWNER[1]} pki/broker.key secrets/definitions.json"
              f" && sudo chown {APP_OWNER[0]}:{APP_OWNER[1]} pki/worker.key pki/producer.key "
              "secrets/*-worker.password secrets/*-producer.password", file=sys.stderr)
        return None
    return {"broker": BROKER_OWNER, "worker": APP_OWNER, "producer": APP_OWNER}


def make_pki(owners):
    sys.path.insert(0, str(PROJECT))
    try:
        from tls import PKIError, bootstrap_pki
    except ImportError as exc:
        fail(f"the PKI tooling needs the 'cryptography' package next to cookiecutter ({exc}); "
             "run: pip install cryptography")
    try:
        bootstrap_pki(PROJECT / "pki", broker_host=BROKER_HOST, client_roles=CLIENT_ROLES, owners=owners,
                      ca_common_name={{ (cookiecutter.project_name ~ " CA") | tojson }})
    except PKIError as exc:
        fail(f"could not create the project's PKI: {exc}")
    os.chmod(PROJECT / "pki", 0o700)   # compose bind-mounts single files; nobody needs to list the dir


def make_credentials():
    from tools.credentials import generate
    generate(PROJECT)


def print_next_steps():
    print(f"\nBaked {PROJECT.name}: PKI in pki/, per-vhost passwords and broker definitions in secrets/ "
          "(0600, git-ignored).\nNext: cd " + PROJECT.name + " && python -m tools.stack demo")


if __name__ == "__main__":
    copy_shared_sources()
    make_pki(key_owners())
    make_credentials()
    print_next_steps()
