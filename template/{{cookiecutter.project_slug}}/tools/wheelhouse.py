"""The worker's wheelhouse: every locked wheel downloaded on the host, checked against the lock's hashes.

The worker image installs from it with ``--no-index --require-hashes``, so its build needs no network and can
pick up nothing that is not pinned by hash. The wheels are chosen for the Python *inside the worker's base
image* (asked, not assumed): its version, ABI, C library and machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
# pip has no API; it runs with a fixed argument list, never through a shell.
import subprocess  # nosec B404
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import docker

from tools.progress import StepError, say, step

STAMP = ".stamp.json"
# Index options pip-compile may copy into a lock from the machine's pip configuration: the download must come
# from the index only, whatever this machine has lying around.
INDEX_OPTIONS = ("-f", "--find-links", "-i", "--index-url", "--extra-index-url", "--trusted-host", "--no-index")
PROBE = ("import json, platform, sys; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
         "'abi': 'cp%d%d' % sys.version_info[:2], 'libc': platform.libc_ver()[1], 'machine': platform.machine()}))")


@dataclass(frozen=True)
class Target:
    """The interpreter wheels must fit: what the base image's python3 says about itself."""

    version: str     # "3.13"
    abi: str         # "cp313"
    libc: str        # glibc version, "2.41"
    machine: str     # "x86_64" or "aarch64"

    def platforms(self) -> list[str]:
        major, minor = (int(part) for part in self.libc.split(".")[:2])
        if major != 2 or self.machine not in ("x86_64", "aarch64"):
            raise StepError("prepare the wheelhouse", f"unsupported base image platform glibc {self.libc} on "
                                                       f"{self.machine} (glibc 2.x on x86_64 or aarch64 only)")
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(minor, 16, -1)] + [f"manylinux2014_{self.machine}"]
        return tags + (["manylinux2010_x86_64", "manylinux1_x86_64"] if self.machine == "x86_64" else [])


def probe_target(engine: docker.DockerClient, base_image: str) -> Target:
    """Run the base image's python3 once (no network) and read its version, ABI, glibc and machine."""
    with step(f"ask {base_image} which Python it runs"):
        output = engine.containers.run(base_image, ["python3", "-c", PROBE], remove=True, network_disabled=True,
                                       user="65534:65534", read_only=True, cap_drop=["ALL"])
        target = Target(**json.loads(output))
        say(f"    Python {target.version} ({target.abi}), glibc {target.libc}, {target.machine}")
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip_ca_bundle() -> str | None:
    """The CA bundle pip is configured with on this machine (PIP_CERT or pip's config), if any."""
    cert = os.environ.get("PIP_CERT")
    if cert and os.path.isfile(cert):
        return cert
    try:
        listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,  # nosec B603
                                 text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.strip().endswith(".cert") and os.path.isfile(value):
            return value
    return None


def without_index_options(lock_text: str) -> str:
    kept = []
    for line in lock_text.splitlines():
        if line.strip().split(" ")[0].split("=")[0] in INDEX_OPTIONS:
            say(f"    ignoring the lock option {line.strip()!r}")
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def prepare(project_dir: Path, target: Target, lock_name: str = "worker.lock") -> Path:
    """Download the locked wheels for `target` into build/wheelhouse/ (skipped when the stamp matches). With the
    dashboard, `lock_name` is its lock, a superset of the worker's (same versions): one wheelhouse serves both."""
    lock = project_dir / "requirements" / lock_name
    wheelhouse = project_dir / "build" / "wheelhouse"
    with step(f"prepare the wheelhouse for Python {target.version}"):
        lock_text = lock.read_text()
        if "--hash=" not in lock_text:
            raise StepError("prepare the wheelhouse", f"{lock} has no --hash= lines; it must be a fully hashed lock")
        wanted = {"lock_sha256": sha256_of(lock), **asdict(target)}
        try:
            stamp = json.loads((wheelhouse / STAMP).read_text())
        except (OSError, ValueError):
            stamp = {}
        files = stamp.get("files", [])
        if all(stamp.get(k) == v for k, v in wanted.items()) and files and all((wheelhouse / f).is_file() for f in files):
            say(f"    up to date ({len(files)} wheels)")
            return wheelhouse
        shutil.rmtree(wheelhouse, ignore_errors=True)
        wheelhouse.mkdir(parents=True)
        # None of this machine's pip configuration applies (find-links, extra indexes), except its CA bundle.
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        if os.environ.get("HC_PIP_INDEX_URL"):
            env["PIP_INDEX_URL"] = os.environ["HC_PIP_INDEX_URL"]
        with tempfile.TemporaryDirectory(prefix="hc-lock-") as scratch:
            clean_lock = Path(scratch) / "worker.lock"
            clean_lock.write_text(without_index_options(lock_text))
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
                       "--implementation", "cp", "--python-version", target.version, "--abi", target.abi,
                       "--dest", str(wheelhouse), "--no-cache-dir", "--progress-bar", "off", "-r", str(clean_lock)]
            for platform_tag in target.platforms():
                command += ["--platform", platform_tag]
            ca_bundle = pip_ca_bundle()
            if ca_bundle:
                command += ["--cert", ca_bundle]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # nosec B603
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise StepError("prepare the wheelhouse", f"pip download failed:\n{tail}")
        files = sorted(path.name for path in wheelhouse.glob("*.whl"))
        allowed = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", lock_text))
        stray = [name for name in files if sha256_of(wheelhouse / name) not in allowed]
        if not files or stray:
            raise StepError("prepare the wheelhouse", f"wheels whose hash is not in the lock: {stray}" if stray
                            else "pip download produced no wheels")
        (wheelhouse / STAMP).write_text(json.dumps({**wanted, "files": files}, indent=2) + "\n")
        say(f"    {len(files)} wheels downloaded")
    return wheelhouse
