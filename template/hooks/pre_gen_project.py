"""Refuse bad template input before anything is written, with one sentence a user understands."""
import importlib.util
import keyword
import re
import sys
from pathlib import Path

SLUG = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
PACKAGE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$")
# uid/gid ranges: 0 is root; 65534 is nobody (shared with everything unprivileged); 999 is RabbitMQ's.
ID_MIN, ID_MAX = 1, 65533
RESERVED_IDS = {999}




def load_name_rules():
    """tools/names.py of the template: the vhost rules `python -m tools.tenants` applies after the bake."""
    path = Path({{ cookiecutter._repo_dir | tojson }}) / "{% raw %}{{cookiecutter.project_slug}}{% endraw %}" / "tools" / "names.py"
    spec = importlib.util.spec_from_file_location("template_name_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fail(sentence):
    print(f"ERROR: {sentence}", file=sys.stderr)
    sys.exit(1)


def check_slug(slug):
    if not SLUG.match(slug):
        fail(f"project_slug {slug!r} must be 3-40 characters of lowercase letters, digits and hyphens, "
             "starting with a letter and not ending with a hyphen.")


def check_package(package):
    if not PACKAGE.match(package) or keyword.iskeyword(package):
        fail(f"package_name {package!r} must be a valid lowercase Python identifier (letters, digits, "
             "underscores, starting with a letter) and not a keyword.")
    if package in {"tls", "tools", "tests", "celery", "kombu", "amqp", "pika"}:
        fail(f"package_name {package!r} would shadow a module the project uses; choose another name.")


def check_vhosts(raw):
    if any(c.isspace() for c in raw):
        fail(f"vhosts {raw!r} must not contain spaces; write them like 'billing,analytics'.")
    problem = load_name_rules().vhosts_problem(raw.split(","))
    if problem:
        fail(problem)


def check_payment_vhosts(raw, vhosts_raw):
    """Empty is allowed (no tenant runs payments); otherwise a subset of the vhosts."""
    chosen = [v for v in raw.split(",") if v] if raw.strip() else []
    if any(c.isspace() for c in raw):
        fail(f"payment_vhosts {raw!r} must not contain spaces; write them like 'billing'.")
    unknown = [v for v in chosen if v not in vhosts_raw.split(",")]
    if unknown:
        fail(f"payment_vhosts names {', '.join(unknown)}, which is not among the vhosts {vhosts_raw!r}; "
             "list only vhosts you are creating (or leave it empty).")


def check_id(name, value):
    value = str(value)
    if not value.isdigit():
        fail(f"{name} {value!r} must be a whole number.")
    number = int(value)
    if number == 0:
        fail(f"{name} must not be 0: workers never run as root.")
    if not ID_MIN <= number <= ID_MAX:
        fail(f"{name} {number} is out of range; choose between {ID_MIN} and {ID_MAX}.")
    if number in RESERVED_IDS:
        fail(f"{name} {number} is the broker's uid/gid; choose another so a worker cannot read broker files.")


def check_broker_host(host):
    labels = host.split(".")
    if len(host) > 253 or not all(HOSTNAME_LABEL.match(label) for label in labels) or host[0].isdigit():
        fail(f"broker_host {host!r} must be a lowercase DNS name (letters, digits, hyphens, dots) "
             "starting with a letter.")
    if host == "localhost":
        fail("broker_host must not be 'localhost': it is the compose service name and is already a SAN.")


def check_image(name, ref):
    if not IMAGE_REF.match(ref) or ":" not in ref.rsplit("/", 1)[-1]:
        fail(f"{name} {ref!r} must be a pinned image reference such as 'repo/name:1.2.3' (a tag is required).")
    if ref.rsplit(":", 1)[-1] == "latest":
        fail(f"{name} {ref!r} uses 'latest'; pin an exact version so builds are reproducible.")


def check_rabbitmq_version(ref):
    repository, _, tag = ref.rpartition(":")
    if repository.rsplit("/", 1)[-1] == "rabbitmq" and not tag.startswith("4."):
        fail(f"rabbitmq_image {ref!r} is not RabbitMQ 4.x; the broker configuration is for 4.x only "
             "(3.x is end of life), e.g. 'rabbitmq:4.2.9'.")


def check_result_store(result_backend, broker_host, redis_image):
    if result_backend != "redis":
        return
    if broker_host == "results":
        fail("broker_host 'results' is the result store's service and host name (result_backend 'redis'); choose "
             "another broker host name.")
    check_image("redis_image", redis_image)
    repository, _, tag = redis_image.rpartition(":")
    major = tag.split(".")[0]
    if repository.rsplit("/", 1)[-1] == "redis" and (not major.isdigit() or int(major) < 7):
        fail(f"redis_image {redis_image!r} is older than Redis 7; the result store's configuration (ACL selectors, "
             "enable-module-command) needs 7 or later, e.g. 'redis:8.2.3'.")


def check_error_reports(error_reports, worker_egress):
    if error_reports == "sentry" and worker_egress != "allowed":
        fail("error_reports 'sentry' sends each failed task's report from the workers to your Sentry, but "
             "worker_egress 'none' gives them no route out of the stack; choose worker_egress 'allowed', or "
             "error_reports 'off'.")


if __name__ == "__main__":
    check_slug({{ cookiecutter.project_slug | tojson }})
    check_package({{ cookiecutter.package_name | tojson }})
    check_vhosts({{ cookiecutter.vhosts | tojson }})
    check_payment_vhosts({{ cookiecutter.payment_vhosts | tojson }}, {{ cookiecutter.vhosts | tojson }})
    check_id("worker_uid", {{ cookiecutter.worker_uid | tojson }})
    check_id("worker_gid", {{ cookiecutter.worker_gid | tojson }})
    check_broker_host({{ cookiecutter.broker_host | tojson }})
    check_image("python_image", {{ cookiecutter.python_image | tojson }})
    check_image("rabbitmq_image", {{ cookiecutter.rabbitmq_image | tojson }})
    check_rabbitmq_version({{ cookiecutter.rabbitmq_image | tojson }})
    check_error_reports({{ cookiecutter.error_reports | tojson }}, {{ cookiecutter.worker_egress | tojson }})
    check_result_store({{ cookiecutter.result_backend | tojson }}, {{ cookiecutter.broker_host | tojson }},
                       {{ cookiecutter.redis_image | tojson }})
