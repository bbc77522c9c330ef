"""Podman for the image tests: the local Debian base (debootstrap, imported once), the fleet image built
from deploy/container/Containerfile, containers that are always removed, and the test PostgreSQL on a
loopback TCP port that a container reaches through slirp4netns.

No image registry is reachable here, so the official python image the Containerfile defaults to is
replaced by a Debian bookworm built with debootstrap: python3 is /usr/bin/python3 there, as the
Containerfile allows.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.dbproxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
BASE_IMAGE = "localhost/cosem-fleet-base:bookworm"
IMAGE = "localhost/cosem-fleet:test"
DEBIAN_MIRROR = os.environ.get("FLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# crun refuses this machine's cgroups (v1); runc runs anywhere. A container gets explicit limits: the
# runtime cannot raise the defaults it inherits here, and the fleet sizes its workers by RLIMIT_NOFILE.
RUNTIME = ("--runtime", "runc")
LIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
# slirp4netns with allow_host_loopback=true: the host's 127.0.0.1 is 10.0.2.2 in the container, so every
# server of the test stays on loopback.
NETWORK = ("--network", "slirp4netns:allow_host_loopback=true")
HOST_LOOPBACK = "10.0.2.2"
# What python:3.11-slim sets and an imported root file system has not.
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
                'CMD ["python3"]')
# Trimmed as debian:bookworm-slim is (its /etc/dpkg/dpkg.cfg.d/docker), apt's downloads and lists gone.
SLIM = r"""
set -e
rm -rf /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/* \
       /usr/share/man/* /usr/share/info/* /usr/share/locale/* /var/log/*.log /var/log/apt/*
find /usr/share/doc -mindepth 1 -not -type d -not -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
cat > /etc/dpkg/dpkg.cfg.d/slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
"""
LOCK = Path(tempfile.gettempdir()) / "cosem-fleet-image.lock"


def require_tools() -> None:
    """Skip the test unless podman, debootstrap and root are there (fail with FLEET_REQUIRE_TOOLS=1)."""
    tools = ("podman", "runc", "slirp4netns", "debootstrap", "tar")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    why = None
    if missing:
        why = (f"{', '.join(missing)} not installed (Debian: apt-get install podman runc slirp4netns "
               "fuse-overlayfs debootstrap)")
    elif os.geteuid() != 0:
        why = "the image test runs as root (debootstrap, rootful podman)"
    if why is not None:
        if os.environ.get("FLEET_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{why}; FLEET_REQUIRE_TOOLS=1 says it must run", pytrace=False)
        pytest.skip(why)


def podman(*args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None,
           stdin=None) -> subprocess.CompletedProcess:
    """``podman ARGS``, its output captured; AssertionError with its output when it fails and ``check``."""
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=stdin)
    if check:
        assert proc.returncode == 0, \
            f"podman {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def image_id(name: str) -> str | None:
    proc = podman("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_size(name: str) -> int:
    """Bytes the image takes, its base included (what `podman images` shows)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout)


def healthcheck(name: str) -> list[str]:
    """The command of the image's HEALTHCHECK (kept by the docker image format)."""
    check = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", name).stdout)
    assert check and check["Test"][0] == "CMD", check
    return check["Test"][1:]


@contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time on this machine (two test sessions would both debootstrap)."""
    with LOCK.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_base() -> float | None:
    """Build and import the Debian base unless podman has it; the seconds it took (None: it was there)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return None
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cosem-fleet-base-"))
    rootfs = work / "rootfs"
    try:
        _debootstrap(rootfs, work / "debootstrap.log")
        proc = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", SLIM], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"trimming the base failed:\n{proc.stderr}"
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
            podman("import", *changes, "-", BASE_IMAGE, stdin=tar.stdout, timeout=300)
        finally:
            tar.stdout.close()
            assert tar.wait(60) == 0, "tar of the base's root file system failed"
    finally:
        _remove_rootfs(work)
    return time.monotonic() - started


def _debootstrap(rootfs: Path, log: Path, timeout: float = 900) -> None:
    cmd = ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm",
           str(rootfs), DEBIAN_MIRROR]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: debootstrap's exit trap unmounts what it mounted in the target
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = None
    assert code == 0, f"{' '.join(cmd)}: {'timed out' if code is None else f'exit {code}'}\n" + \
        "\n".join(log.read_text(errors="replace").splitlines()[-20:])


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first)."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # octal escapes of spaces and the like
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _remove_rootfs(work: Path) -> None:
    """Remove debootstrap's folder, never through a mount it left behind (a bind mount of /dev, /proc)."""
    for point in _mounts_under(work):
        subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30)
    left = _mounts_under(work)
    assert not left, f"{work} kept, still mounted: {left}"
    shutil.rmtree(work, ignore_errors=True)


def host_ca_bundle() -> str | None:
    """The host's CA bundle, for pip in the build (secret `pip-ca`): the host may reach PyPI through a
    TLS-intercepting proxy whose CA only the host trusts. On an open network it is the public CAs anyway."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def build_image(base: str = BASE_IMAGE, tag: str = IMAGE, timeout: float = 900) -> float:
    """Build deploy/container/Containerfile from the repository root on ``base``; the seconds it took.

    Docker image format, so that the HEALTHCHECK is kept; layers cached, so that an unchanged tree costs
    seconds; the image it replaces is removed."""
    args = ["build", "--isolation", "chroot", "--network", "host", "--format", "docker", "--layers",
            "--build-arg", f"BASE={base}", "--file", str(CONTAINERFILE), "--tag", tag]
    bundle = host_ca_bundle()
    if bundle is not None:
        args += ["--secret", f"id=pip-ca,src={bundle}"]
    previous = image_id(tag)
    started = time.monotonic()
    podman(*args, str(ROOT), timeout=timeout)
    took = time.monotonic() - started
    if previous is not None and previous != image_id(tag):
        podman("rmi", previous, check=False)  # superseded: only its build cache is worth keeping
    return took


@contextmanager
def container(name: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``podman run --detach --name NAME ARGS``, removed (with --force) whatever happens."""
    try:
        podman("run", "--detach", "--name", name, *args, env=env, timeout=120)
        yield name
    finally:
        podman("rm", "--force", "--ignore", "--time", "0", name, check=False, timeout=60)


class LoopbackProxy(CuttableProxy):
    """The test PostgreSQL on 127.0.0.1:``port``: the embedded server listens on a unix socket only, which a
    container cannot reach; through slirp4netns the container reaches the host's loopback."""

    def __init__(self, url: str, port: int) -> None:
        self._wanted = port
        super().__init__(url)

    def _listen(self) -> None:
        self.port = self.port or self._wanted  # CuttableProxy would take an ephemeral port
        super()._listen()
