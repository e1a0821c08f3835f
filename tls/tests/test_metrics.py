"""`python -m tls metrics`: each certificate's expiry and usability in Prometheus's text format, for the PKI alert
rules (monitoring/alerts.yml) through node_exporter's textfile collector."""
from __future__ import annotations

import re
import time
from pathlib import Path

from tls import add_client, bootstrap_pki
from tls.__main__ import main
from tls.metrics import EXPIRY, USABLE, exposition

SAMPLE = re.compile(r'^(\w+)\{name="([^"]+)"(?:,status="([A-Z]+)")?\} (\d+)$')


def samples(text: str) -> dict[tuple[str, str], tuple[str | None, int]]:
    found = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            metric, name, status, value = SAMPLE.fullmatch(line).groups()
            found[(metric, name)] = (status, int(value))
    return found


def test_every_certificate_has_its_expiry_and_usability(tmp_path: Path, capsys):
    pki = tmp_path / "pki"
    bootstrap_pki(pki, "rabbitmq", ["worker"], ca_common_name="Test CA")
    add_client(pki, "short-lived", valid_days=10)
    assert main(["--dir", str(pki), "metrics"]) == 0
    text = capsys.readouterr().out
    assert text == exposition(pki)
    found = samples(text)
    names = {"ca", "issuing-ca", "broker", "worker", "short-lived"}
    assert {name for metric, name in found if metric == EXPIRY} == names
    assert {name for metric, name in found if metric == USABLE} == names
    days_left = (found[(EXPIRY, "short-lived")][1] - time.time()) / 86400
    assert 9 < days_left <= 10                                    # CertificateExpiresSoon fires on it
    assert found[(USABLE, "short-lived")] == ("EXPIRING", 1)      # still accepted by peers
    assert found[(USABLE, "worker")] == ("OK", 1)
    # Each family's lines together, after its HELP and TYPE (the text format's rule).
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    order = [line.split("{")[0] for line in text.splitlines() if not line.startswith("#")]
    assert families == [EXPIRY, USABLE] and order == sorted(order, key=families.index)


def test_a_certificate_off_its_chain_is_unusable(tmp_path: Path):
    pki = tmp_path / "pki"
    bootstrap_pki(pki, "rabbitmq", ["worker"], ca_common_name="Test CA")
    other = tmp_path / "other"
    bootstrap_pki(other, "rabbitmq", ["worker"], ca_common_name="Other CA")
    (pki / "worker.crt").write_bytes((other / "worker.crt").read_bytes())    # signed by a foreign issuing CA
    status, usable = samples(exposition(pki))[(USABLE, "worker")]
    assert usable == 0, status
