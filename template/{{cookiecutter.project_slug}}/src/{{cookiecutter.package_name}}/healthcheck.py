"""Container healthcheck: healthy while the worker's liveness file is fresh and its client certificate valid
(exit 0), else exit 1. The output, kept in `docker inspect`'s health log, also says when the certificate expires."""
import sys
from pathlib import Path

from .certificate_expiry import expiry_report
from .liveness import LIVENESS_FILE, liveness_problem
from .broker_settings import client_certificate_file


def main() -> int:
    valid, certificate = expiry_report(Path(client_certificate_file()))
    age, problem = liveness_problem(LIVENESS_FILE, f"{LIVENESS_FILE} missing (worker not connected yet)",
                                    "last broker-connected heartbeat {age:.0f}s ago")
    if problem is not None:
        print(f"unhealthy: {problem}; {certificate}")
        return 1
    if not valid:
        print(f"unhealthy: {certificate}")
        return 1
    print(f"healthy: heartbeat {age:.0f}s ago; {certificate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
