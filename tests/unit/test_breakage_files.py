"""Config files on a full file system: an error, never a damaged file.

Devices run from small SD cards that fill up with logs and images. These
tests mount a 64 KiB tmpfs (the tests run as root, like the edge core under
systemd) and fill it, then check that every write the edge core makes
either succeeds or fails with the previous content intact.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_core.config.files import rewrite_in_place
from edge_core.twins.files import write_twin_file


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for this test; fails when it cannot be mounted."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (run the tests as root): {result.stderr}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> None:
    """Use up every free block of the file system holding ``directory``."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_in_place_rewrite_on_a_full_disk_keeps_the_old_content(small_fs: Path) -> None:
    """Growing a file in place on a full disk raises ENOSPC and leaves the old
    bytes, not a half-written file."""
    path = small_fs / "twin.json"
    old = b'{"a": "' + b"x" * 100 + b'"}\n'
    path.write_bytes(old)
    inode = path.stat().st_ino
    fill(small_fs)

    with pytest.raises(OSError) as raised:
        rewrite_in_place(path, b'{"a": "' + b"y" * 20000 + b'"}\n')

    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == old
    assert path.stat().st_ino == inode


def test_twin_file_on_a_full_disk_stays_valid_json(small_fs: Path) -> None:
    """A twin file that cannot grow on a full disk is still the last good
    document afterwards, so the driver reading it never sees garbage."""
    twin = {"uuid": "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90", "name": "arm"}
    write_twin_file(small_fs, twin, {"uuid": "a1", "name": "so101"})
    path = small_fs / f"{twin['uuid']}.json"
    before = path.read_bytes()
    fill(small_fs)

    with pytest.raises(OSError):
        write_twin_file(small_fs, twin, {"uuid": "a1", "blob": "z" * 30000})

    assert path.read_bytes() == before
    assert json.loads(before)["asset"]["name"] == "so101"


def test_in_place_rewrite_with_room_still_works(small_fs: Path) -> None:
    """With free space the file grows in place to exactly the new content."""
    path = small_fs / "twin.json"
    path.write_bytes(b"{}\n")
    inode = path.stat().st_ino

    rewrite_in_place(path, b'{"grown": "' + b"g" * 5000 + b'"}\n')

    assert json.loads(path.read_bytes())["grown"] == "g" * 5000
    assert path.stat().st_ino == inode
