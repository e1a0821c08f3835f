"""README command 1: bake a project with the defaults into build/demo/ and run its demo (stack stays up)."""
import sys
import time

from tests.support.bake import REPO_ROOT, bake, run_in

DEMO_DIR = REPO_ROOT / "build" / "demo"


def set_aside_previous_bake() -> None:
    """Nothing is lost: an earlier demo project is stopped and moved aside, not deleted."""
    if not DEMO_DIR.exists():
        return
    for project in DEMO_DIR.iterdir():
        if (project / "compose.yaml").exists():
            run_in(project, sys.executable, "-m", "tools.stack", "down", timeout=300)
    previous = DEMO_DIR.with_name(f"demo-previous-{time.strftime('%Y%m%d-%H%M%S')}")
    DEMO_DIR.rename(previous)
    print(f"==> moved the previous demo bake to {previous.relative_to(REPO_ROOT)}")


def main(argv: list[str]) -> int:
    started = time.monotonic()
    set_aside_previous_bake()
    DEMO_DIR.mkdir(parents=True)
    print("==> baking the template with its defaults (cookiecutter --no-input)", flush=True)
    project = bake(DEMO_DIR)
    print(f"    baked {project.relative_to(REPO_ROOT)}", flush=True)
    command = [sys.executable, "-m", "tools.stack", "demo", *argv]
    completed = run_in(project, *command, timeout=1800, capture=False)
    print(f"==> finished in {time.monotonic() - started:.0f}s (exit {completed.returncode}); project: "
          f"{project.relative_to(REPO_ROOT)}", flush=True)
    if completed.returncode == 0 and "--down" not in argv:
        print(f"    stop the stack: cd {project.relative_to(REPO_ROOT)} && {sys.executable} -m tools.stack down")
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
