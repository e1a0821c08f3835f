"""Finish the baked project: shared tooling, PKI, per-vhost secrets. Secrets are made here, never in
cookiecutter.json, so they cannot reach cookiecutter's replay file. They stay owned by whoever bakes (root or
not); each container user gets read access to exactly the files compose.yaml mounts for it."""
import os
import shutil
import sys
from pathlib import Path

PROJECT = Path.cwd()
REPO_ROOT = Path({{ cookiecutter._repo_dir | tojson }}).resolve().parent
BROKER_HOST = {{ cookiecutter.broker_host | tojson }}
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


def make_pki():
    """The root (its key to pki-root/), the issuing CA, the broker's certificate and one client certificate per
    broker user (stack.toml x roles), plus the metrics scraper's (broker_metrics = tls) and the result store's
    server certificate (result_backend = redis)."""
    sys.path.insert(0, str(PROJECT))
    try:
        from tls import PKIError, add_local_server, bootstrap_pki
    except ImportError as exc:
        fail(f"the PKI tooling needs the 'cryptography' package next to cookiecutter ({exc}); "
             "run: pip install cryptography")
    from tools import settings
    stack = settings.load(PROJECT)
    try:
        bootstrap_pki(PROJECT / "pki", broker_host=BROKER_HOST, client_roles=stack.client_certificates,
                      ca_common_name={{ (cookiecutter.project_name ~ " CA") | tojson }},
                      servers=stack.server_hosts)       # result_backend = redis: the result store's certificate
        for dashboard in stack.dashboard_certificates:       # flower = https: each dashboard's HTTPS certificate
            add_local_server(PROJECT / "pki", dashboard)
    except PKIError as exc:
        fail(f"could not create the project's PKI: {exc}")
    os.chmod(PROJECT / "pki", 0o700)   # compose bind-mounts single files; nobody needs to list the dir


def drop_unused_monitoring():
    """monitoring/ (Prometheus scrape config and alert rules) only where the broker serves metrics."""
    if {{ cookiecutter.broker_metrics | tojson }} != "tls":
        shutil.rmtree(PROJECT / "monitoring")


def drop_files(*paths):
    for path in paths:
        (PROJECT / path).unlink()


def drop_unused_dashboard():
    """The dashboard's code and lock only where it is baked in (flower = https)."""
    if {{ cookiecutter.flower | tojson }} != "https":
        drop_files("requirements/dashboard.in", "requirements/dashboard.lock",
                   "src/{{ cookiecutter.package_name }}/dashboard.py", "tests/unit/test_dashboard.py")


def drop_unused_error_reports():
    """The error reports' code and unit tests only where they are baked in (error_reports = sentry); the security
    suite's LOG-03 test stays, and checks that nothing of them is in the stack."""
    if {{ cookiecutter.error_reports | tojson }} != "sentry":
        drop_files("src/{{ cookiecutter.package_name }}/error_reports.py", "tests/unit/test_error_reports.py")


def drop_unused_result_store():
    """The result store's image, configuration, client code and stand-in only where it is baked in (result_backend =
    redis); the security suite's RES tests stay, and check that nothing of it is in the stack."""
    if {{ cookiecutter.result_backend | tojson }} != "redis":
        shutil.rmtree(PROJECT / "results")
        shutil.rmtree(PROJECT / "docker" / "results")
        shutil.rmtree(PROJECT / "docker" / "standins" / "redis")
        drop_files("src/{{ cookiecutter.package_name }}/result_store.py", "tests/unit/test_result_store.py")


def write_tenant_services():
    """compose.yaml's per-tenant services, volumes and secrets, generated from stack.toml (tools/tenants.py)."""
    from tools.tenants import sync
    sync(PROJECT)


def write_controls_table():
    """README.md's security table, generated from policies/controls.toml and the tests' markers (tools/catalog.py)."""
    from tools import catalog, settings
    readme = PROJECT / catalog.README
    readme.write_text(catalog.readme_with_table(settings.load(PROJECT)))


def make_credentials():
    """Passwords and definitions; then the read grants of every secret file compose.yaml mounts."""
    from tools.credentials import generate
    from tools.file_access import AccessError
    try:
        generate(PROJECT)
    except AccessError as exc:
        fail(str(exc))


def print_next_steps():
    credentials = ("per-vhost passwords and broker definitions" if {{ cookiecutter.broker_login | tojson }} == "password"
                   else "broker definitions (certificate login: no passwords)")
    print(f"\nBaked {PROJECT.name}: PKI in pki/, {credentials} in secrets/ "
          "(0600, git-ignored; each container user may read only its own).\nThe root CA's encrypted key and its "
          "passphrase are in pki-root/: move them off this host, apart (README: the offline root).\nNext: cd "
          + PROJECT.name + " && python -m tools.stack demo")


if __name__ == "__main__":
    copy_shared_sources()
    make_pki()
    drop_unused_monitoring()
    drop_unused_dashboard()
    drop_unused_error_reports()
    drop_unused_result_store()
    write_tenant_services()
    write_controls_table()
    make_credentials()
    print_next_steps()
