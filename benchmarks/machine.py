"""What the figures were measured on: host, Docker, and the versions inside the containers."""
import datetime
import os
import platform
import sys


def _first(path: str, prefix: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def describe(docker_client, worker_image: str) -> dict:
    import celery
    import kombu
    import pydantic
    memory_kb = _first("/proc/meminfo", "MemTotal")
    worker_versions = docker_client.containers.run(
        worker_image, ["python3", "-c", "import sys, celery, kombu, pydantic; print(sys.version.split()[0], "
                                       "celery.__version__, kombu.__version__, pydantic.VERSION)"],
        remove=True, network_mode="none", read_only=True, cap_drop=["ALL"]).decode().split()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory_kb.split()[0]) / 2**20, 1) if memory_kb != "unknown" else None,
        "kernel": platform.release(),
        "docker": docker_client.version().get("Version"),
        "client": {"python": platform.python_version(), "celery": celery.__version__, "kombu": kombu.__version__,
                   "pydantic": pydantic.VERSION, "executable": sys.executable},
        "worker": dict(zip(("python", "celery", "kombu", "pydantic"), worker_versions)),
    }
