"""The project under test: bake the template with its defaults (timed), build its images, import its modules."""
import importlib
import os
import subprocess  # nosec B404  (cookiecutter CLI, fixed arguments)
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def bake(output_dir: Path) -> tuple[Path, float]:
    """Bake the defaults through the real CLI, as a user does; returns (project dir, wall seconds)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    config = output_dir / "cookiecutter-config.yaml"          # keep the replay file out of $HOME
    config.write_text(f"replay_dir: {output_dir / 'replay'}\ncookiecutters_dir: {output_dir / 'cc'}\n")
    started = time.monotonic()
    command = [str(VENV_BIN / "cookiecutter"), "--no-input", "-o", str(output_dir), str(REPO_ROOT)]
    subprocess.run(command, check=True, capture_output=True, timeout=300,  # nosec B603
                   env={**os.environ, "COOKIECUTTER_CONFIG": str(config)})
    elapsed = time.monotonic() - started
    projects = [p for p in output_dir.iterdir() if (p / "stack.toml").is_file()]
    if len(projects) != 1:
        raise RuntimeError(f"expected one baked project in {output_dir}, found {projects}")
    return projects[0], elapsed


def use(project_dir: Path) -> None:
    """Make the baked project's `tools`, `tests` and package importable (ahead of this repo's own `tests`)."""
    if "tests" in sys.modules and not str(sys.modules["tests"].__file__).startswith(str(project_dir)):
        raise RuntimeError("this repo's `tests` package is already imported; the baked one would be shadowed")
    for path in (project_dir / "src", project_dir):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def engine_client(project_dir: Path):
    use(project_dir)
    return importlib.import_module("tools.engine").client()


def build_images(project_dir: Path) -> dict:
    """The project's own image builder (cached after the first build), with its step timings and sizes."""
    use(project_dir)
    built = importlib.import_module("tools.images").build_images(project_dir).__dict__
    client = engine_client(project_dir)
    sizes = {kind: client.images.get(built[kind]).attrs["Size"] for kind in ("broker", "worker")}
    return {**built, "sizes_bytes": sizes}


def run_security_suite(project_dir: Path, timeout: float = 1500) -> dict:
    """Wall time of the baked security suite: `cold` is its first run in a fresh bake (no bytecode or pytest
    cache, images already built), `warm` the run right after."""
    timings = {}
    for label in ("cold", "warm"):
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/security"], cwd=project_dir,
                                capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
                                check=False)  # nosec B603
        timings[label] = {"seconds": round(time.monotonic() - started, 1), "exit_code": result.returncode,
                          "summary": (result.stdout.strip().splitlines() or [""])[-1]}
    return timings
