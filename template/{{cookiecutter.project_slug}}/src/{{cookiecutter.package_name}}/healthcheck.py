"""Container healthcheck: healthy while the worker's liveness file is fresh (exit 0), else exit 1."""
import sys
import time

from .liveness import LIVENESS_FILE, STALE_AFTER_SECONDS


def main() -> int:
    try:
        age = time.time() - LIVENESS_FILE.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {LIVENESS_FILE} missing (worker not connected yet)")
        return 1
    if age > STALE_AFTER_SECONDS:
        print(f"unhealthy: last broker-connected heartbeat {age:.0f}s ago")
        return 1
    print(f"healthy: heartbeat {age:.0f}s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
