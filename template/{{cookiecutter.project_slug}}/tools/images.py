"""Build the project's container images with the Docker SDK.

Usage (from the project root)::

    python -m tools.images build        # base images, wheelhouse, broker + worker
    python -m tools.images bases        # only resolve/build the two base images
    python -m tools.images wheelhouse   # only download the worker's wheels

Base images are settings (``stack.toml`` ``[images]``): the official
``python``/``rabbitmq`` images are used when present locally or pullable.
Where no registry can be reached, an offline *stand-in* is built instead from
``docker/standins/<kind>/Dockerfile`` on top of a Debian bookworm rootfs made
with ``debootstrap`` and imported with the SDK.  ``HC_OFFLINE_STANDINS=1``
skips the pull attempt.  ``HC_BUILD_VERBOSE=1`` prints every build output line.

Every long step prints what it does and how long it took; a failure raises
:class:`StepError`, whose message names the step and the reason.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
# debootstrap and pip have no Python API; both run with fixed argument lists, never through a shell.
import subprocess  # nosec B404
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Iterator

import docker
from docker.errors import DockerException, ImageNotFound

PROJECT_DIR = Path(__file__).resolve().parents[1]

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

# kind -> (stand-in tag version, Dockerfile directory relative to the project)
STANDINS = {
    "python": ("3.11", "docker/standins/python"),
    "rabbitmq": ("3.10", "docker/standins/rabbitmq"),
}
STANDIN_LABEL = "org.example.hc.standin-dockerfile-sha256"
WHEELHOUSE_STAMP = ".stamp.json"
DOCKER_TIMEOUT = 1800  # seconds; a build step may print nothing for minutes


class StepError(RuntimeError):
    """A named step failed; ``str()`` reads ``<step>: <reason>``."""

    def __init__(self, step_name: str, reason: str):
        super().__init__(f"{step_name}: {reason}")
        self.step = step_name
        self.reason = reason


def _say(msg: str) -> None:
    print(msg, flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Print the start and the duration of a step; turn failures into StepError."""
    _say(f"==> {name} ...")
    t0 = time.monotonic()
    try:
        yield
    except StepError:
        _say(f"<== {name}: FAILED after {time.monotonic() - t0:.1f}s")
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised with the step's name
        _say(f"<== {name}: FAILED after {time.monotonic() - t0:.1f}s")
        raise StepError(name, f"{type(exc).__name__}: {exc}") from exc
    _say(f"<== {name}: done in {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------- settings


def load_settings(project_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``stack.toml`` at the project root."""
    path = Path(project_dir) / "stack.toml"
    try:
        with path.open("rb") as fh:
            settings = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise StepError("load settings", f"{path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StepError("load settings", f"{path} is not valid TOML: {exc}") from exc
    for key in ("python", "rabbitmq", "worker", "broker", "standin_prefix"):
        if not settings.get("images", {}).get(key):
            raise StepError("load settings", f"{path}: [images] {key} is missing")
    settings["_project_dir"] = str(Path(project_dir).resolve())
    return settings


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT)
        client.ping()
    except DockerException as exc:
        raise StepError("connect to Docker", str(exc)) from exc
    return client


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        return False


def _split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); digests are left in the repo part."""
    if "@" in ref:
        return ref, ""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:  # no tag, or the colon was a registry port
        return ref, "latest"
    return name, tag


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- base images


def resolve_base_image(
    client: docker.DockerClient,
    official_ref: str,
    standin_kind: str,
    settings: dict[str, Any],
) -> str:
    """Return the image reference to build FROM for ``standin_kind``.

    Order: the official image if present locally; else a pull of it (skipped
    with HC_OFFLINE_STANDINS=1); else the offline stand-in
    ``<standin_prefix>-<kind>:<version>``, built if missing or outdated.
    """
    if standin_kind not in STANDINS:
        raise StepError("resolve base image", f"unknown stand-in kind {standin_kind!r}")
    name = f"resolve base image for {standin_kind} ({official_ref})"
    with step(name):
        if _image_exists(client, official_ref):
            _say(f"    using official image {official_ref} (present locally)")
            return official_ref
        if _truthy(os.environ.get("HC_OFFLINE_STANDINS")):
            _say("    HC_OFFLINE_STANDINS set: not trying to pull")
        else:
            t0 = time.monotonic()
            repo, tag = _split_ref(official_ref)
            try:
                client.images.pull(repo, tag=tag or None)
                _say(f"    pulled {official_ref} in {time.monotonic() - t0:.1f}s")
                return official_ref
            except DockerException as exc:
                reason = str(exc).splitlines()[0][:300]
                _say(f"    pull failed after {time.monotonic() - t0:.1f}s ({reason}); "
                     "falling back to the offline stand-in")
        return _ensure_standin(client, standin_kind, settings)


def _project_dir(settings: dict[str, Any]) -> Path:
    return Path(settings.get("_project_dir") or PROJECT_DIR)


def _ensure_standin(client: docker.DockerClient, kind: str, settings: dict[str, Any]) -> str:
    version, rel_dir = STANDINS[kind]
    prefix = settings["images"]["standin_prefix"]
    tag = f"{prefix}-{kind}:{version}"
    context = _project_dir(settings) / rel_dir
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise StepError(f"build stand-in {tag}", f"{dockerfile} not found")
    digest = hashlib.sha256(dockerfile.read_bytes()).hexdigest()
    try:
        existing = client.images.get(tag)
        if (existing.labels or {}).get(STANDIN_LABEL) == digest:
            _say(f"    reusing stand-in {tag} (already built from this Dockerfile)")
            return tag
        _say(f"    stand-in {tag} exists but was built from another Dockerfile: rebuilding")
    except ImageNotFound:
        pass
    debian = ensure_debian_rootfs(client, settings)
    _build(
        client,
        f"build stand-in {tag}",
        path=str(context),
        dockerfile="Dockerfile",
        tag=tag,
        buildargs={"DEBIAN_IMAGE": debian},
        labels={STANDIN_LABEL: digest},
    )
    return tag


def ensure_debian_rootfs(client: docker.DockerClient, settings: dict[str, Any]) -> str:
    """Create ``<standin_prefix>-debian:bookworm`` once (debootstrap + import)."""
    tag = f"{settings['images']['standin_prefix']}-debian:{DEBIAN_SUITE}"
    if _image_exists(client, tag):
        _say(f"    reusing Debian rootfs image {tag}")
        return tag
    with step(f"create Debian {DEBIAN_SUITE} rootfs image {tag}"):
        if os.name != "posix" or os.geteuid() != 0:
            raise StepError("debootstrap", "needs root (run as root, or provide the official images)")
        debootstrap = shutil.which("debootstrap") or (
            "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None)
        if not debootstrap:
            raise StepError("debootstrap", "the debootstrap command is missing "
                                           "(apt-get install -y debootstrap)")
        with tempfile.TemporaryDirectory(prefix="hc-debootstrap-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            log = Path(tmp) / "debootstrap.log"
            with step(f"debootstrap --variant=minbase {DEBIAN_SUITE} ({DEBIAN_MIRROR})"):
                with log.open("wb") as out:
                    proc = subprocess.run(  # nosec B603
                        [debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
                        stdout=out, stderr=subprocess.STDOUT, check=False,
                    )
                if proc.returncode != 0:
                    tail = log.read_text(errors="replace").splitlines()[-15:]
                    raise StepError("debootstrap", f"exit status {proc.returncode}:\n" + "\n".join(tail))
            # No apt lists / package caches in the base: images install with apt-get update.
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in (rootfs / sub).glob("*"):
                    if entry.is_file():
                        entry.unlink()
            tar_path = Path(tmp) / "rootfs.tar"
            with step("pack rootfs"):
                with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
                    for entry in sorted(rootfs.iterdir()):
                        tar.add(str(entry), arcname=entry.name, recursive=True)
            with step(f"import rootfs as {tag} ({tar_path.stat().st_size // (1 << 20)} MiB)"):
                repo, image_tag = _split_ref(tag)
                result = client.api.import_image_from_file(
                    str(tar_path), repository=repo, tag=image_tag,
                    changes=[
                        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        'CMD ["bash"]',
                    ],
                )
                if "error" in str(result).lower() and not _image_exists(client, tag):
                    raise StepError("import rootfs", str(result)[:500])
                if not _image_exists(client, tag):
                    raise StepError("import rootfs", f"{tag} missing after import: {result!s:.300}")
    return tag


# --------------------------------------------------------------------------- wheelhouse


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _target_platforms() -> tuple[str, list[str]]:
    """manylinux platform tags a Debian bookworm (glibc 2.36) container accepts."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine)
    if arch is None:
        raise StepError("prepare wheelhouse", f"unsupported machine {platform.machine()!r} "
                                              "(x86_64 or aarch64 only)")
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return arch, tags


def _pip_ca_bundle() -> str | None:
    """The CA bundle pip is configured with here (env or pip config), if any."""
    cert = os.environ.get("PIP_CERT")
    if cert and os.path.isfile(cert):
        return cert
    try:
        out = subprocess.run(  # nosec B603
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".cert"):
            value = value.strip().strip("'\"")
            if os.path.isfile(value):
                return value
    return None


_INDEX_OPTIONS = ("-f", "--find-links", "-i", "--index-url", "--extra-index-url",
                  "--trusted-host", "--no-index")


def _strip_index_options(lock_text: str) -> str:
    """Drop index/find-links options embedded in a lock (pip-compile copies them
    from the machine's pip config, e.g. ``--find-links /opt/wheels``): the
    download must come from the index only, whatever this machine has lying around."""
    kept = []
    for line in lock_text.splitlines():
        first = line.strip().split(" ")[0].split("=")[0]
        if first in _INDEX_OPTIONS:
            _say(f"    ignoring lock option {line.strip()!r}")
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def _lock_hashes(lock: Path) -> set[str]:
    return set(re.findall(r"--hash=sha256:([0-9a-f]{64})", lock.read_text()))


def prepare_wheelhouse(project_dir: str | os.PathLike[str]) -> Path:
    """Download the worker's locked wheels into ``build/wheelhouse/`` (host side).

    Deterministic: only the lock's files (``--no-deps --require-hashes``), binary
    wheels for CPython 3.11 on manylinux/<this machine's arch>, and none of the
    machine's pip configuration (find-links, extra indexes, constraints) except
    the CA bundle.  Skipped when the stamp says the wheelhouse matches the lock.
    """
    project = Path(project_dir)
    lock = project / "requirements" / "worker.lock"
    wheelhouse = project / "build" / "wheelhouse"
    stamp_path = wheelhouse / WHEELHOUSE_STAMP
    with step(f"prepare wheelhouse {wheelhouse.relative_to(project)}"):
        if not lock.is_file():
            raise StepError("prepare wheelhouse", f"{lock} not found")
        lock_text = lock.read_text()
        if "--hash=" not in lock_text:
            raise StepError("prepare wheelhouse", f"{lock} has no --hash= lines (needs a fully hashed lock)")
        arch, platforms = _target_platforms()
        lock_sha = _sha256_file(lock)
        want = {"lock_sha256": lock_sha, "arch": arch, "python": "cp311"}
        if stamp_path.is_file():
            try:
                stamp = json.loads(stamp_path.read_text())
            except ValueError:
                stamp = {}
            files = stamp.get("files", [])
            if (all(stamp.get(k) == v for k, v in want.items()) and files
                    and all((wheelhouse / f).is_file() for f in files)):
                _say(f"    up to date ({len(files)} wheels, lock sha256 {lock_sha[:12]})")
                return wheelhouse
        if wheelhouse.exists():
            shutil.rmtree(wheelhouse)
        wheelhouse.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
        env.update({
            "PIP_CONFIG_FILE": os.devnull,  # ignore /etc/pip.conf, ~/.config/pip, ...
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        })
        if os.environ.get("HC_PIP_INDEX_URL"):
            env["PIP_INDEX_URL"] = os.environ["HC_PIP_INDEX_URL"]
        cmd = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--require-hashes", "--only-binary=:all:",
            "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
            "--dest", str(wheelhouse), "--no-cache-dir", "--progress-bar", "off",
            "-r", str(lock),
        ]
        for tag in platforms:
            cmd += ["--platform", tag]
        ca = _pip_ca_bundle()
        if ca:
            cmd += ["--cert", ca]
        _say(f"    pip download for cp311/{arch} (CA bundle: {ca or 'pip default'})")
        with tempfile.TemporaryDirectory(prefix="hc-lock-") as tmp:
            clean_lock = Path(tmp) / "worker.lock"
            clean_lock.write_text(_strip_index_options(lock_text))
            cmd[cmd.index(str(lock))] = str(clean_lock)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # nosec B603
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
            raise StepError("prepare wheelhouse", "pip download failed:\n" + "\n".join(tail))
        files = sorted(p.name for p in wheelhouse.glob("*.whl"))
        if not files:
            raise StepError("prepare wheelhouse", "pip download produced no wheels")
        allowed = _lock_hashes(lock)
        stray = [f for f in files if _sha256_file(wheelhouse / f) not in allowed]
        if stray:
            raise StepError("prepare wheelhouse", f"files whose hash is not in the lock: {stray}")
        stamp_path.write_text(json.dumps({**want, "files": files}, indent=2) + "\n")
        _say(f"    {len(files)} wheels downloaded")
    return wheelhouse


# --------------------------------------------------------------------------- builds


def _build(client: docker.DockerClient, name: str, **kwargs: Any) -> str:
    """Run ``api.build`` and stream condensed progress; return the image id."""
    verbose = _truthy(os.environ.get("HC_BUILD_VERBOSE"))
    tail: collections.deque[str] = collections.deque(maxlen=40)
    image_id = ""
    steps = cached = 0
    with step(name):
        kwargs.setdefault("rm", True)
        kwargs.setdefault("forcerm", True)
        kwargs.setdefault("pull", False)
        stream = client.api.build(decode=True, **kwargs)
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise StepError(name, detail.strip() + ("\n--- last output ---\n" + "\n".join(tail)
                                                        if tail else ""))
            if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            text = chunk.get("stream")
            if not text:
                continue
            for line in text.rstrip("\n").splitlines():
                line = line.rstrip()
                if not line:
                    continue
                tail.append(line)
                if line.startswith("Step "):
                    steps += 1
                    _say(f"    {line[:160]}")
                elif "Using cache" in line:
                    cached += 1
                    if verbose:
                        _say(f"      {line}")
                elif verbose:
                    _say(f"      {line}")
        if not image_id:
            tag = kwargs.get("tag")
            try:
                image_id = client.images.get(tag).id if tag else ""
            except ImageNotFound:
                raise StepError(name, "build finished without an image\n" + "\n".join(tail)) from None
        _say(f"    {steps} steps, {cached} from cache -> {kwargs.get('tag')} ({image_id[:19]})")
    return image_id


def build_images(project_dir: str | os.PathLike[str] = PROJECT_DIR) -> dict[str, Any]:
    """Resolve both bases, prepare the wheelhouse, build broker and worker images."""
    t0 = time.monotonic()
    project = Path(project_dir).resolve()
    settings = load_settings(project)
    images = settings["images"]
    client = docker_client()
    timings: dict[str, float] = {}

    t = time.monotonic()
    rabbitmq_base = resolve_base_image(client, images["rabbitmq"], "rabbitmq", settings)
    python_base = resolve_base_image(client, images["python"], "python", settings)
    timings["bases"] = time.monotonic() - t

    t = time.monotonic()
    prepare_wheelhouse(project)
    timings["wheelhouse"] = time.monotonic() - t

    t = time.monotonic()
    broker_id = _build(
        client, f"build broker image {images['broker']}",
        path=str(project), dockerfile="docker/broker/Dockerfile", tag=images["broker"],
        buildargs={"RABBITMQ_IMAGE": rabbitmq_base},
    )
    timings["broker"] = time.monotonic() - t

    t = time.monotonic()
    worker_id = _build(
        client, f"build worker image {images['worker']}",
        path=str(project), dockerfile="docker/worker/Dockerfile", tag=images["worker"],
        buildargs={"PYTHON_IMAGE": python_base},
    )
    timings["worker"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t0
    _say(f"==> images ready in {timings['total']:.1f}s: broker {images['broker']} "
         f"(FROM {rabbitmq_base}), worker {images['worker']} (FROM {python_base})")
    return {
        "broker": images["broker"],
        "worker": images["worker"],
        "broker_id": broker_id,
        "worker_id": worker_id,
        "rabbitmq_base": rabbitmq_base,
        "python_base": python_base,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.images", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "bases", "wheelhouse"])
    parser.add_argument("--project-dir", default=str(PROJECT_DIR),
                        help="project root holding stack.toml (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            result = build_images(args.project_dir)
            print(json.dumps(result, indent=2))
        elif args.command == "bases":
            settings = load_settings(args.project_dir)
            client = docker_client()
            for official, kind in ((settings["images"]["rabbitmq"], "rabbitmq"),
                                   (settings["images"]["python"], "python")):
                _say(f"{kind}: {resolve_base_image(client, official, kind, settings)}")
        else:
            prepare_wheelhouse(args.project_dir)
    except StepError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
