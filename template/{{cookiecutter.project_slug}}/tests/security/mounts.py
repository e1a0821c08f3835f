"""Files and mounts for deliberately altered test stacks (weakenings, benchmark baselines)."""
import os
import shutil
import tempfile
from pathlib import Path

from testcontainers.core.container import DockerContainer


class ScratchFiles:
    """Files written for one altered test stack (weakenings, benchmark baselines), owned as the container
    users need; compose-style bind mounts of single files need no access to the directory itself."""

    def __init__(self, prefix: str):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def write(self, name: str, text: str, owner: tuple[int, int], mode: int = 0o600) -> Path:
        path = self.path / name
        path.write_text(text)
        os.chmod(path, mode)
        if os.geteuid() == 0:
            os.chown(path, *owner)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def remount(container: DockerContainer, source: Path, target: str) -> None:
    """Mount `source` read-only at `target`, replacing whatever the container definition mounted there."""
    container.volumes = {host: mount for host, mount in container.volumes.items() if mount["bind"] != target}
    container.with_volume_mapping(str(source), target, "ro")


def broker_config_with(project_dir: Path, line: str, replacement: str) -> str:
    """broker/rabbitmq.conf with one line replaced (a conf.d file cannot undo e.g. `listeners.tcp = none`)."""
    return broker_config_swapped(project_dir, {line: replacement})


def broker_config_swapped(project_dir: Path, swaps: dict[str, str]) -> str:
    """broker/rabbitmq.conf with each whole line `line` replaced by `swaps[line]` (which may span lines)."""
    lines = (project_dir / "broker" / "rabbitmq.conf").read_text().splitlines()
    for line, replacement in swaps.items():
        if line not in lines:
            raise ValueError(f"broker/rabbitmq.conf no longer contains the line {line!r}")
        lines = [replacement if candidate == line else candidate for candidate in lines]
    return "\n".join(lines) + "\n"
