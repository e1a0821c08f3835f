"""Base images: the official ones when present or pullable, otherwise offline stand-ins built from Debian.

A stand-in is built from ``docker/standins/<kind>/Dockerfile`` on top of a Debian trixie root filesystem made
with ``debootstrap`` (needs root) and imported with the SDK. It mimics the official image at the interface the
project uses (paths, users, commands); see each Dockerfile's header. ``HC_OFFLINE_STANDINS=1`` skips the pull
(air-gapped machines, or machines that must not reach a registry).
"""
from __future__ import annotations

import hashlib
import os
import shutil
# debootstrap has no Python API; it runs with a fixed argument list, never through a shell.
import subprocess  # nosec B404
import tarfile
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound

from tools.engine import build_image, image_exists, truthy
from tools.progress import StepError, say, step
from tools.settings import StackSettings

DEBIAN_SUITE = "trixie"                        # Debian 13: RabbitMQ 4.0 on Erlang 27, Python 3.13
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# kind -> (stand-in tag version, Dockerfile directory relative to the project)
STANDINS = {
    "python": ("3.13", "docker/standins/python"),
    "rabbitmq": ("4.0", "docker/standins/rabbitmq"),
    "redis": ("8.0", "docker/standins/redis"),
}
STANDIN_LABEL = "org.example.hc.standin-dockerfile-sha256"   # rebuilt when its Dockerfile changes


def split_reference(ref: str) -> tuple[str, str | None]:
    """``repo[:tag]`` -> (repo, tag); a digest stays in the repo part, a registry port is not a tag."""
    if "@" in ref:
        return ref, None
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return ref, "latest"
    return name, tag


def resolve(engine: docker.DockerClient, official: str, kind: str, settings: StackSettings) -> str:
    """The image to build FROM: the official one if present or pullable, else the stand-in (built if needed)."""
    with step(f"resolve the {kind} base image ({official})"):
        if image_exists(engine, official):
            say(f"    using the official image {official} (present)")
            return official
        if truthy(os.environ.get("HC_OFFLINE_STANDINS")):
            say("    HC_OFFLINE_STANDINS is set: not trying to pull")
        else:
            started = time.monotonic()
            repo, tag = split_reference(official)
            try:
                engine.images.pull(repo, tag=tag)
                say(f"    pulled {official} in {time.monotonic() - started:.1f}s")
                return official
            except DockerException as exc:
                say(f"    pull failed after {time.monotonic() - started:.1f}s ({str(exc).splitlines()[0][:200]}); "
                    "using the offline stand-in")
        return ensure_standin(engine, kind, settings, official)


def ensure_standin(engine: docker.DockerClient, kind: str, settings: StackSettings, official: str) -> str:
    version, relative = STANDINS[kind]
    tag = f"{settings.images.standin_prefix}-{kind}:{version}"
    dockerfile = settings.project_dir / relative / "Dockerfile"
    digest = hashlib.sha256(dockerfile.read_bytes()).hexdigest()
    try:
        if (engine.images.get(tag).labels or {}).get(STANDIN_LABEL) == digest:
            say(f"    reusing the stand-in {tag} (built from this Dockerfile)")
            return tag
        say(f"    the stand-in {tag} was built from another Dockerfile: rebuilding")
    except ImageNotFound:
        pass
    debian = ensure_debian_rootfs(engine, settings, official)
    build_image(engine, f"build the stand-in {tag}", path=str(dockerfile.parent), dockerfile="Dockerfile", tag=tag,
                buildargs={"DEBIAN_IMAGE": debian}, labels={STANDIN_LABEL: digest})
    return tag


def ensure_debian_rootfs(engine: docker.DockerClient, settings: StackSettings, official: str) -> str:
    """``<standin_prefix>-debian:trixie``, made once with debootstrap and imported."""
    tag = f"{settings.images.standin_prefix}-debian:{DEBIAN_SUITE}"
    if image_exists(engine, tag):
        say(f"    reusing the Debian root filesystem image {tag}")
        return tag
    debootstrap = shutil.which("debootstrap") or next(
        (path for path in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.path.exists(path)), None)
    cannot = f"{official} is not available here, so an offline stand-in must be built from Debian packages"
    if not debootstrap:
        raise StepError("debootstrap", f"{cannot}, which needs debootstrap: install it (as root on Debian/Ubuntu: "
                                       "apt-get install debootstrap) or make the official image available")
    if os.geteuid() != 0:
        raise StepError("debootstrap", f"{cannot}, which needs root once: run `python -m tools.images bases` as "
                                       "root, or make the official image available (docker pull / docker load)")
    with step(f"create the Debian {DEBIAN_SUITE} root filesystem image {tag}"), \
            tempfile.TemporaryDirectory(prefix="hc-debootstrap-") as scratch:
        rootfs, log = Path(scratch) / "rootfs", Path(scratch) / "debootstrap.log"
        with step(f"debootstrap --variant=minbase {DEBIAN_SUITE} ({DEBIAN_MIRROR})"), log.open("wb") as out:
            done = subprocess.run([debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
                                  stdout=out, stderr=subprocess.STDOUT, check=False)  # nosec B603
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise StepError("debootstrap", f"exit status {done.returncode}:\n{tail}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):   # images run apt-get update themselves
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        archive = Path(scratch) / "rootfs.tar"
        with step("pack the root filesystem"), tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(rootfs.iterdir()):
                tar.add(str(entry), arcname=entry.name, recursive=True)
        repo, image_tag = split_reference(tag)
        with step(f"import it as {tag}"):
            engine.api.import_image_from_file(str(archive), repository=repo, tag=image_tag, changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["bash"]'])
            if not image_exists(engine, tag):
                raise StepError("import the root filesystem", f"{tag} is missing after the import")
    return tag
