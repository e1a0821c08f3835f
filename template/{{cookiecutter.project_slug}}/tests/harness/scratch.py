"""Files for one deliberately altered test stack (weakenings, the resilience rig, benchmark baselines)."""
import os
import shutil
import tempfile
from pathlib import Path


class ScratchFiles:
    """A private temporary directory; compose bind-mounts single files from it, so containers never need to
    read the directory itself. Secret files get read grants from the stack's compose model when it starts."""

    def __init__(self, prefix: str):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def write(self, name: str, text: str, mode: int = 0o600) -> Path:
        path = self.path / name
        path.write_text(text)
        os.chmod(path, mode)
        return path

    def directory(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(mode=0o700)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def broker_config_swapped(project_dir: Path, swaps: dict[str, str], name: str = "rabbitmq.conf",
                          directory: str = "broker") -> str:
    """<directory>/<name> (the broker's by default) with each line whose text (indentation aside) is `line` replaced
    by `swaps[line]`, indented alike: a conf.d file cannot undo e.g. `listeners.tcp = none`, and advanced.config is
    not merged, so an altered broker gets a whole replaced file."""
    lines = (project_dir / directory / name).read_text().splitlines()
    for line, replacement in swaps.items():
        found = [candidate for candidate in lines if candidate.strip() == line]
        if len(found) != 1:
            raise ValueError(f"{directory}/{name} no longer contains exactly one line {line!r}")
        indent = found[0][:len(found[0]) - len(found[0].lstrip())]
        lines = [indent + replacement if candidate is found[0] else candidate for candidate in lines]
    return "\n".join(lines) + "\n"
