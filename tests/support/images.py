"""Test images built on this machine from busybox-static with ``docker import``.

No test pulls from Docker Hub or any registry outside the machine: the
test driver image is a tar holding ``/bin/busybox`` and one symlink per
applet, imported into the engine. What a test driver does (sleep, print,
exit with a code) is chosen by its command, e.g.
``["sh", "-c", "echo INFO started; sleep 3600"]``.

The test driver image (``ensure_driver_image``) is the same file system
with a command that runs ``$DRIVER_SCRIPT``, so a twin's driver metadata
``params: ["-e", "DRIVER_SCRIPT=echo WARNING hot; exit 3"]`` decides what
the driver does; without it the driver prints one line and sleeps. Its
``local`` tag means the edge core never tries to pull it.

Building is idempotent and safe under pytest-xdist: a file lock in the
shared temporary directory serialises builders, and an image whose
content label matches is reused.

Run ``python -m tests.support.images`` to build the images for a demo.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import docker
from docker.errors import ImageNotFound

TEST_IMAGE = "cw-test/busybox:1"
DRIVER_IMAGE = "cw-test/driver:local"
DRIVER_BANNER = "INFO test driver up"
DRIVER_COMMAND = (
    "sh",
    "-c",
    f'eval "${{DRIVER_SCRIPT:-echo {DRIVER_BANNER}; while true; do sleep 3600; done}}"',
)
BUSYBOX = Path("/bin/busybox")
CONTENT_LABEL = "io.cyberwave.test.content"
# Bump when the image config in import_rootfs changes: the content hash
# covers only the file system, and stale images must be rebuilt.
_LAYOUT_VERSION = "2"
_MTIME = 1_700_000_000
_ETC_FILES = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    ),
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1 localhost\n",
}


@contextmanager
def build_lock(name: str = "cw-test-images.lock") -> Iterator[None]:
    """Hold an exclusive lock shared by every test process on this machine."""
    path = Path(tempfile.gettempdir()) / name
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applet names the host's busybox provides."""
    result = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    )
    return sorted({name for name in result.stdout.split() if "/" not in name})


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = _MTIME
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = _MTIME
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    info.mtime = _MTIME
    tar.addfile(info)


def busybox_rootfs(
    busybox: Path = BUSYBOX, *, extra: dict[str, bytes] | None = None
) -> bytes:
    """A root file system tar: busybox, its applets, a minimal /etc."""
    if not busybox.is_file():
        raise RuntimeError(
            f"{busybox} is missing; install busybox-static (scripts/setup-host does)"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "etc", "root", "dev", "proc", "sys", "app"):
            _add_dir(tar, directory)
        _add_dir(tar, "tmp", 0o1777)
        _add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
        for applet in busybox_applets(busybox):
            if applet != "busybox":
                _add_link(tar, f"bin/{applet}", "busybox")
        for name, text in _ETC_FILES.items():
            _add_file(tar, name, text.encode())
        for name, data in (extra or {}).items():
            _add_file(tar, name, data)
    return buffer.getvalue()


def _content_id(rootfs: bytes, command: Sequence[str] = ("sh",)) -> str:
    digest = hashlib.sha256(rootfs)
    digest.update(_LAYOUT_VERSION.encode())
    if tuple(command) != ("sh",):
        digest.update(json.dumps(list(command)).encode())
    return digest.hexdigest()


def _existing_content(client: docker.DockerClient, tag: str) -> str | None:
    try:
        attrs = client.api.inspect_image(tag)
    except ImageNotFound:
        return None
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    value = labels.get(CONTENT_LABEL)
    return str(value) if value else None


def import_rootfs(
    client: docker.DockerClient,
    tag: str,
    rootfs: bytes,
    content_id: str,
    *,
    command: Sequence[str] = ("sh",),
) -> str:
    """Import ``rootfs`` as image ``tag`` running ``command``; return its id."""
    repository, _, version = tag.rpartition(":")
    changes = [
        "ENV PATH=/bin",
        f"CMD {json.dumps(list(command))}",
        "WORKDIR /",
        f"LABEL {CONTENT_LABEL}={content_id}",
    ]
    client.api.import_image_from_data(
        rootfs, repository=repository, tag=version, changes=changes
    )
    return str(client.api.inspect_image(tag)["Id"])


def ensure_test_image(client: docker.DockerClient, tag: str = TEST_IMAGE) -> str:
    """Build ``tag`` from busybox-static unless an identical one exists.

    Returns the image id. Safe to call from many processes at once.
    """
    rootfs = busybox_rootfs()
    content_id = _content_id(rootfs)
    with build_lock():
        if _existing_content(client, tag) == content_id:
            return str(client.api.inspect_image(tag)["Id"])
        return import_rootfs(client, tag, rootfs, content_id)


def ensure_driver_image(client: docker.DockerClient, tag: str = DRIVER_IMAGE) -> str:
    """Build the test driver image ``tag`` unless an identical one exists.

    Its command evaluates ``$DRIVER_SCRIPT`` (default: print
    ``DRIVER_BANNER`` and sleep). Returns the image id; safe to call from
    many processes at once.
    """
    rootfs = busybox_rootfs()
    content_id = _content_id(rootfs, DRIVER_COMMAND)
    with build_lock():
        if _existing_content(client, tag) == content_id:
            return str(client.api.inspect_image(tag)["Id"])
        return import_rootfs(client, tag, rootfs, content_id, command=DRIVER_COMMAND)


ROUTER_IMAGE = "cw-test/zenoh:local"
ROUTER_ENTRYPOINT = (
    "/bin/sh",
    "-c",
    "echo zenohd $*; trap 'exit 0' TERM; while true; do sleep 1; done",
    "zenohd",
)
"""Like the real ``eclipse/zenoh`` image's: takes the router's arguments,
prints them and keeps running."""


def ensure_router_image(
    client: docker.DockerClient,
    tag: str = ROUTER_IMAGE,
    *,
    entrypoint: Sequence[str] = ROUTER_ENTRYPOINT,
) -> str:
    """Build the Zenoh router stand-in ``tag`` (running ``entrypoint``)
    unless an identical one exists."""
    rootfs = busybox_rootfs()
    digest = hashlib.sha256(json.dumps(list(entrypoint)).encode()).hexdigest()[:16]
    content_id = f"zenoh-stand-in-{digest}"
    with build_lock():
        if _existing_content(client, tag) == content_id:
            return str(client.api.inspect_image(tag)["Id"])
        repository, _, version = tag.rpartition(":")
        client.api.import_image_from_data(
            rootfs,
            repository=repository,
            tag=version,
            changes=[
                "ENV PATH=/bin",
                f"ENTRYPOINT {json.dumps(list(entrypoint))}",
                f"LABEL {CONTENT_LABEL}={content_id}",
            ],
        )
        return str(client.api.inspect_image(tag)["Id"])


def build_unique_image(
    client: docker.DockerClient,
    tag: str,
    *,
    size: int = 2_000_000,
    command: Sequence[str] = ("sh",),
) -> str:
    """Import a runnable image whose layer exists nowhere else.

    The layer holds busybox plus ``size`` random bytes, so pulling it from a
    registry really downloads it. ``command`` is its CMD (pass
    ``DRIVER_COMMAND`` for a unique test driver). Returns the image id.
    """
    rootfs = busybox_rootfs(extra={"app/random.bin": os.urandom(size)})
    content_id = _content_id(rootfs, command)
    return import_rootfs(client, tag, rootfs, content_id, command=command)


def main() -> int:
    """Build the test images for the demo and the test suite."""
    client = docker.from_env()
    image_id = ensure_test_image(client)
    print(f"test image {TEST_IMAGE} is {image_id[:19]}")
    driver_id = ensure_driver_image(client)
    print(f"test driver image {DRIVER_IMAGE} is {driver_id[:19]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
