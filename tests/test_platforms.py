"""The README's commands where users are, not only as root: a non-root user in the docker group, and a user who
reaches the engine only through a DOCKER_HOST that is not the default socket (as with a rootless or remote
engine). Each runs the demo command from its own checkout of this repository, then the baked project's security
suite.

The test itself needs root: it creates the user, changes its groups and runs the socket forwarder. CI runs as root.
"""
import grp
import os
import pwd
import shutil
import socket
import subprocess  # nosec B404
import tempfile
import threading
from pathlib import Path

import pytest

from tests.support.bake import REPO_ROOT

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(os.geteuid() != 0, reason="creating a user and changing its groups needs root")]
USER = "hc-platform"
DEFAULT_SOCKET = "/var/run/docker.sock"
# What a login shell of a fresh user has: no pyenv, no root-only configuration, the machine's /etc settings.
USER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_as_user(home: Path, command: list[str], cwd: Path, timeout: float, **env) -> subprocess.CompletedProcess:
    clean = {"HOME": str(home), "USER": USER, "LOGNAME": USER, "PATH": USER_PATH, "LANG": "C.UTF-8",
             "HC_OFFLINE_STANDINS": os.environ.get("HC_OFFLINE_STANDINS", ""), **env}
    return subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in clean.items()],
                           *command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)  # nosec B603 B607


class SocketForwarder:
    """A unix socket that forwards every connection to the engine's default socket, counting them: a DOCKER_HOST
    for a user who may not open the default socket itself."""

    def __init__(self, path: Path, owner: int):
        self.path, self.connections = path, 0
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        os.chown(path, owner, -1)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(DEFAULT_SOCKET)
            for source, target in ((client, engine), (engine, client)):
                threading.Thread(target=self.pump, args=(source, target), daemon=True).start()

    @staticmethod
    def pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def checkout():
    """A user (created once) and their own copy of this repository: tracked and new files, nothing ignored."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)  # nosec B603 B607
    user = pwd.getpwnam(USER)
    home = Path(user.pw_dir)
    base = Path(tempfile.mkdtemp(prefix="hc-platform-", dir="/tmp"))
    os.chmod(base, 0o755)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")  # nosec B603 B607
    repo = base / "repo"
    for name in filter(None, listed):
        if (REPO_ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(base)], check=True)  # nosec B603 B607
    yield home, repo, user
    shutil.rmtree(base, ignore_errors=True)


def set_docker_group(member: bool) -> None:
    command = ["usermod", "-aG", "docker", USER] if member else ["gpasswd", "-d", USER, "docker"]
    if member or USER in grp.getgrnam("docker").gr_mem:
        subprocess.run(command, check=True, capture_output=True)  # nosec B603 B607


def demo_and_security_suite(home: Path, repo: Path, **env) -> str:
    demo = run_as_user(home, ["bash", "scripts/demo", "--down"], repo, timeout=1500, **env)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output[-5000:]
    assert "add(2, 3) = 5" in output and "canary /tmp/pwned in the worker: absent" in output, output[-3000:]
    project = repo / "build" / "demo" / "hardened-tasks"
    suite = run_as_user(home, [str(repo / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "tests/security"], project, timeout=1500,
                        PATH=f"{repo / '.venv' / 'bin'}:{USER_PATH}", **env)
    assert suite.returncode == 0, suite.stdout[-5000:] + suite.stderr[-2000:]
    return suite.stdout.strip().splitlines()[-1]


def test_a_docker_group_member_runs_the_demo_and_the_security_suite(checkout):
    home, repo, _ = checkout
    set_docker_group(True)
    summary = demo_and_security_suite(home, repo)
    print(f"non-root docker-group user: demo ran, security suite: {summary}")


def test_a_user_without_the_default_socket_works_through_docker_host(checkout, tmp_path_factory):
    home, repo, user = checkout
    set_docker_group(False)
    socket_dir = Path(tempfile.mkdtemp(prefix="hc-docker-host-", dir="/tmp"))
    os.chown(socket_dir, user.pw_uid, user.pw_gid)
    forwarder = SocketForwarder(socket_dir / "engine.sock", user.pw_uid)
    try:
        # Without DOCKER_HOST this user reaches no engine: provisioning says so in one sentence, and stops.
        refused = run_as_user(home, ["bash", "scripts/provision"], repo, timeout=600)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith(
            "error: the Docker engine's socket /var/run/docker.sock is not yours to use;"), refused.stderr
        summary = demo_and_security_suite(home, repo, DOCKER_HOST=f"unix://{forwarder.path}")
    finally:
        forwarder.close()
        shutil.rmtree(socket_dir, ignore_errors=True)
        set_docker_group(True)
    assert forwarder.connections > 0
    print(f"DOCKER_HOST=unix://{forwarder.path}: {forwarder.connections} connections forwarded; security suite: "
          f"{summary}")
