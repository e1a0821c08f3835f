"""The PKI's state as Prometheus metrics (text exposition format), for node_exporter's textfile collector:

    python -m tls metrics > /var/lib/node_exporter/textfile_collector/pki.prom     # e.g. hourly, from cron

No listener and no new port: the file is read where node_exporter already runs. monitoring/alerts.yml alerts on
a certificate that expires within 30 days, or is expired, revoked or off its chain.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .pki_directory import check_pki

EXPIRY = "pki_certificate_expiry_timestamp_seconds"
USABLE = "pki_certificate_usable"
USABLE_STATUSES = ("OK", "EXPIRING")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(pki_dir: Path, warn_days: int = 30) -> str:
    """Two gauges per certificate of `pki_dir`, labelled with its name: when it expires (Unix time), and whether
    a peer would accept it now (1: valid, unrevoked, on its chain; 0: not)."""
    rows = check_pki(pki_dir, warn_days)

    def sample(metric: str, value: float, **labels: str) -> str:
        # (No doubled braces in an f-string here: the baked project's check for unrendered templates forbids them.)
        return metric + "{" + ",".join(f'{key}="{_label(text)}"' for key, text in labels.items()) + "} " + f"{value:.0f}"

    # Each family's samples together, after its HELP and TYPE (the text format requires one group per family).
    lines = [f"# HELP {EXPIRY} When the certificate expires (Unix time).", f"# TYPE {EXPIRY} gauge"]
    lines += [sample(EXPIRY, datetime.fromisoformat(row["not_after"]).timestamp(), name=row["name"])
              for row in rows if "not_after" in row]
    lines += [f"# HELP {USABLE} 1 if the certificate is valid, unrevoked and on its chain now, else 0.",
              f"# TYPE {USABLE} gauge"]
    lines += [sample(USABLE, row["status"] in USABLE_STATUSES and row.get("chain") == "valid",
                     name=row["name"], status=row["status"]) for row in rows]
    return "\n".join(lines) + "\n"
