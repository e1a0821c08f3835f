"""Bad template input is refused by pre_gen_project with one clear sentence, and nothing is written."""
import pytest

from tests.support.bake import bake_cli

REFUSALS = [
    ({"project_slug": "Bad Slug"}, "project_slug 'Bad Slug' must be 3-40 characters"),
    ({"package_name": "class"}, "package_name 'class' must be a valid lowercase Python identifier"),
    ({"package_name": "tls"}, "would shadow a module"),
    ({"vhosts": "billing,,analytics"}, "no empty entries"),
    ({"vhosts": "billing,Billing"}, "vhost 'Billing' must be 2-24 characters"),
    ({"vhosts": "billing,analytics,billing"}, "vhosts lists billing more than once"),
    ({"vhosts": "billing, analytics"}, "must not contain spaces"),
    ({"vhosts": "a/b"}, "vhost 'a/b' must be"),
    ({"vhosts": "billing,dashboard"}, "vhost 'dashboard' is reserved"),
    ({"payment_vhosts": "payroll"}, "payment_vhosts names payroll, which is not among the vhosts 'billing,analytics'"),
    ({"payment_vhosts": "billing, analytics"}, "payment_vhosts 'billing, analytics' must not contain spaces"),
    ({"worker_uid": "0"}, "worker_uid must not be 0: workers never run as root."),
    ({"worker_gid": "0"}, "worker_gid must not be 0"),
    ({"worker_uid": "70000"}, "worker_uid 70000 is out of range"),
    ({"worker_uid": "-5"}, "worker_uid '-5' must be a whole number."),
    ({"worker_uid": "999"}, "is the broker's uid/gid"),
    ({"broker_host": "Bad_Host"}, "broker_host 'Bad_Host' must be a lowercase DNS name"),
    ({"broker_host": "localhost"}, "must not be 'localhost'"),
    ({"python_image": "python:latest"}, "uses 'latest'"),
    ({"rabbitmq_image": "rabbitmq"}, "must be a pinned image reference"),
    ({"rabbitmq_image": "rabbitmq:3.13.7"}, "is not RabbitMQ 4.x; the broker configuration is for 4.x only"),
    ({"management_ui": "http"}, "http provided for choice variable management_ui, but the choices are"),
    ({"flower": "on"}, "on provided for choice variable flower, but the choices are"),
    ({"error_reports": "sentry"}, ("worker_egress 'none' gives them no route out of the stack; choose "
                                   "worker_egress 'allowed', or error_reports 'off'.")),
    ({"result_backend": "memcached"}, "memcached provided for choice variable result_backend, but the choices are"),
    ({"broker_host": "results", "result_backend": "redis"}, "broker_host 'results' is the result store's service"),
    ({"redis_image": "redis:6.2.14", "result_backend": "redis"}, "is older than Redis 7"),
    ({"redis_image": "redis", "result_backend": "redis"}, "must be a pinned image reference"),
]


@pytest.mark.parametrize("answers, sentence", REFUSALS, ids=[next(iter(a)) + "=" + next(iter(a.values()))
                                                             for a, _ in REFUSALS])
def test_bad_input_is_refused_with_a_sentence(tmp_path, answers, sentence):
    result = bake_cli(tmp_path, *[f"{key}={value}" for key, value in answers.items()])
    assert result.returncode != 0
    assert sentence in result.stderr + result.stdout
    assert not any(path.is_dir() and path.name not in ("replay", "cookiecutters") for path in tmp_path.iterdir())
