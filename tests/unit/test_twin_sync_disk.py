"""Twin sync on a full disk: a file is never truncated or half written.

The config dir is a 64 KiB tmpfs filled to the last block, so growing a
twin file in place or keeping a backup fails with ENOSPC the way it does on
a device whose SD card is full.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_core.cloud.rest import CloudClient
from edge_core.model.twins import Twin
from edge_core.twins.backups import BACKUP_DIR
from edge_core.twins.files import twin_path
from edge_core.twins.sync import TwinSync
from tests.emulator.server import Emulator

FINGERPRINT = "test-twin-sync-disk"
ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
ARM = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for this test; fails when it cannot be mounted."""
    mount_point = tmp_path / "config"
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


@pytest.fixture
def client(emulator: Emulator) -> Iterator[CloudClient]:
    emulator.load_example_environment(FINGERPRINT)
    made = CloudClient(
        base_url=emulator.url, token=lambda: emulator.token, retries=0, version="t"
    )
    yield made
    made.close()


@pytest.fixture
def synced(small_fs: Path, client: CloudClient) -> TwinSync:
    """A sync whose twin file is written and seen once, before the disk fills."""
    sync = TwinSync(small_fs, client)
    raw = next(t for t in client.environment_twins(ENV) if t["uuid"] == ARM)
    twin = Twin.from_raw(raw)
    assert twin is not None and twin.asset_uuid is not None
    asset = client.get_asset(twin.asset_uuid)
    assert sync.ensure_files([twin], {twin.asset_uuid: asset}) == [ARM]
    sync.sync(client.environment_twins(ENV), [ARM])
    return sync


def fill(directory: Path) -> Path:
    """Use up every free block of the file system holding ``directory``."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_pull_on_a_full_disk_keeps_the_file_and_retries(
    small_fs: Path,
    synced: TwinSync,
    client: CloudClient,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Larger backend metadata that does not fit leaves the old bytes; later it fits."""
    path = twin_path(small_fs, ARM)
    before = path.read_bytes()
    baseline = synced.baselines()[ARM]
    metadata = {"edge_fingerprint": FINGERPRINT, "notes": "x" * 12_000}
    emulator.edit_twin(ARM, {"metadata": metadata})
    filler = fill(small_fs)

    with caplog.at_level(logging.WARNING, logger="edge_core.twins.sync"):
        report = synced.sync(client.environment_twins(ENV), [ARM])

    assert report.pulled == ()
    assert path.read_bytes() == before
    assert synced.baselines()[ARM] == baseline
    assert any(str(path) in r.getMessage() for r in caplog.records)

    filler.unlink()
    retried = synced.sync(client.environment_twins(ENV), [ARM])

    assert retried.pulled == (ARM,)
    assert json.loads(path.read_text())["metadata"] == metadata


def test_repair_waits_until_the_damaged_bytes_can_be_kept(
    small_fs: Path, synced: TwinSync, client: CloudClient
) -> None:
    """No backup space means no repair: the damaged content is not lost."""
    path = twin_path(small_fs, ARM)
    good = path.read_bytes()
    damaged = b'{"name": "cut short by the driver'
    with path.open("r+b") as handle:
        handle.write(damaged)
        handle.truncate()
    filler = fill(small_fs)

    report = synced.sync(client.environment_twins(ENV), [ARM])

    assert report.repaired == ()
    assert path.read_bytes() == damaged
    assert not list((small_fs / BACKUP_DIR).glob("*.corrupt"))

    filler.unlink()
    retried = synced.sync(client.environment_twins(ENV), [ARM])

    assert retried.repaired == (ARM,)
    assert path.read_bytes() == good
    (backup,) = (small_fs / BACKUP_DIR).glob("*.corrupt")
    assert backup.read_bytes() == damaged
