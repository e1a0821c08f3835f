"""Bake the template the way users do (cookiecutter, non-interactive) and run commands in the result."""
import os
import subprocess  # nosec B404
import sys
from pathlib import Path

from cookiecutter.main import cookiecutter

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def bake(output_dir: Path, **answers) -> Path:
    """Bake with --no-input defaults overridden by `answers`; returns the project directory."""
    # Keep cookiecutter's replay file inside the test's own directory (and inspectable by tests).
    os.environ["COOKIECUTTER_CONFIG"] = str(_user_config(output_dir))
    project = cookiecutter(str(REPO_ROOT), no_input=True, output_dir=str(output_dir),
                           extra_context={k: str(v) for k, v in answers.items()})
    return Path(project)


def _user_config(output_dir: Path) -> Path:
    config = output_dir / "cookiecutter-config.yaml"
    config.write_text(f"replay_dir: {output_dir / 'replay'}\ncookiecutters_dir: {output_dir / 'cookiecutters'}\n")
    return config


def bake_cli(output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """Bake through the real command line (hook exit codes and stderr as a user sees them)."""
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(_user_config(output_dir))}
    return subprocess.run([str(VENV_BIN / "cookiecutter"), "--no-input", "-o", str(output_dir), str(REPO_ROOT),
                           *extra], capture_output=True, text=True, env=env, check=False)  # nosec B603


def run_in(project: Path, *command: str, timeout: float = 900, capture: bool = True,
           **env) -> subprocess.CompletedProcess:
    """Run a command in a baked project with this interpreter's venv on PATH."""
    full_env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(list(command), cwd=project, capture_output=capture, text=True, timeout=timeout,
                          env=full_env, check=False)  # nosec B603
