"""The model cache under the failures real sites have.

A process killed in the middle of a download, two processes ensuring the
same model at once, and a disk that fills up: each must leave the
previous good file and the manifest untouched, and the next run must
finish the job. Processes are real (the ``cyberwave-edge-core models``
command against the backend emulator), the disk is a real small tmpfs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_core.cloud.rest import CloudClient
from edge_core.models import (
    CacheOptions,
    Downloader,
    DownloadOptions,
    ModelManager,
    ModelUnavailable,
    Outcome,
)
from tests.emulator.server import Emulator
from tests.support.weights_server import WeightsServer

pytestmark = pytest.mark.integration

SMALL = os.urandom(300_000)


def sha(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def files() -> Iterator[WeightsServer]:
    """A running weights server."""
    with WeightsServer() as server:
        yield server


def publish(
    emulator: Emulator,
    files: WeightsServer,
    data: bytes,
    *,
    model_uuid: str,
    path: str = "bucket/yolov8n.pt",
    **serving: Any,
) -> None:
    """Serve ``data`` as the signed artifact of catalog model ``yolov8n``."""
    files.add(path, data, **serving)
    emulator.put_mlmodel(
        {
            "uuid": model_uuid,
            "model_external_id": "yolov8n",
            "checksum_sha256": sha(data),
        },
        weights={"signed_url": files.url(path, "X-Goog-Signature=s")},
    )


def write_config(config_dir: Path, emulator: Emulator) -> None:
    """credentials.json pointing the edge core at the emulator."""
    config_dir.mkdir(parents=True, exist_ok=True)
    credentials = {
        "token": emulator.token,
        "envs": {"CYBERWAVE_BASE_URL": emulator.url},
    }
    (config_dir / "credentials.json").write_text(json.dumps(credentials))


def command_env(config_dir: Path) -> dict[str, str]:
    """The process environment of a ``cyberwave-edge-core`` run on ``config_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYBERWAVE_")}
    env.pop("SUDO_UID", None)
    env["CYBERWAVE_EDGE_CONFIG_DIR"] = str(config_dir)
    return env


def ensure_process(config_dir: Path) -> subprocess.Popen[str]:
    """Start ``cyberwave-edge-core models ensure yolov8n -v``."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge_core", "models", "ensure", "yolov8n", "-v"],
        env=command_env(config_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def partials(model_dir: Path) -> list[Path]:
    """The partial download files in ``model_dir``."""
    if not model_dir.is_dir():
        return []
    return [p for p in model_dir.iterdir() if p.name.endswith(".part")]


def wait_for(predicate: Any, *, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_kill_9_mid_download_keeps_the_old_file_and_the_rerun_resumes(
    emulator: Emulator, files: WeightsServer, tmp_path: Path
) -> None:
    """A killed update leaves v1 and the manifest as they were; the rerun resumes v2."""
    config_dir = tmp_path / "cfg"
    write_config(config_dir, emulator)
    model_uuid = str(uuid.uuid4())
    publish(emulator, files, SMALL, model_uuid=model_uuid)
    first = ensure_process(config_dir)
    assert first.wait(60) == 0, first.stdout.read() if first.stdout else ""
    model_dir = config_dir / "models" / "yolov8n"
    manifest_before = (config_dir / "models" / "manifest.json").read_bytes()
    sidecar_before = (model_dir / "metadata.json").read_bytes()

    big = os.urandom(6 << 20)
    publish(emulator, files, big, model_uuid=model_uuid, path="v2/yolov8n.pt", rate=2e6)
    child = ensure_process(config_dir)
    try:
        wait_for(
            lambda: any(p.stat().st_size > 1 << 20 for p in partials(model_dir)),
            timeout=60,
            what="the partial download to pass 1 MiB",
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)

    assert (model_dir / "yolov8n.pt").read_bytes() == SMALL
    assert (config_dir / "models" / "manifest.json").read_bytes() == manifest_before
    assert (model_dir / "metadata.json").read_bytes() == sidecar_before
    (kept,) = partials(model_dir)
    kept_size = kept.stat().st_size
    assert 0 < kept_size < len(big)

    files.change("v2/yolov8n.pt", rate=None)
    rerun = ensure_process(config_dir)
    output = rerun.communicate(timeout=120)[0]

    assert rerun.returncode == 0, output
    assert (model_dir / "yolov8n.pt").read_bytes() == big
    last = files.requests("v2/yolov8n.pt")[-1]
    assert last.status == 206
    assert last.header("Range") == f"bytes={kept_size}-"
    assert partials(model_dir) == []
    manifest = json.loads((config_dir / "models" / "manifest.json").read_text())
    assert manifest["yolov8n"]["checksum_sha256"] == sha(big)


def test_two_processes_ensuring_one_model_download_it_once(
    emulator: Emulator, files: WeightsServer, tmp_path: Path
) -> None:
    """Two concurrent runs both succeed, the file is downloaded once and is whole."""
    config_dir = tmp_path / "cfg"
    write_config(config_dir, emulator)
    data = os.urandom(3 << 20)
    publish(emulator, files, data, model_uuid=str(uuid.uuid4()), rate=6e6)

    runs = [ensure_process(config_dir) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    transfers = [r for r in files.requests("bucket/yolov8n.pt") if r.status == 200]
    assert len(transfers) == 1
    model_dir = config_dir / "models" / "yolov8n"
    assert (model_dir / "yolov8n.pt").read_bytes() == data
    assert sorted(os.listdir(model_dir)) == ["metadata.json", "yolov8n.pt"]
    joined = "\n".join(outputs)
    assert "ready (downloaded)" in joined and "ready (cached, verified)" in joined
    manifest = json.loads((config_dir / "models" / "manifest.json").read_text())
    assert manifest["yolov8n"]["checksum_sha256"] == sha(data)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test and unmounted after it."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs ({done.stderr.strip()}); the disk-full tests "
            f"need root",
            pytrace=False,
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def disk_manager(emulator: Emulator, small_disk: Path) -> Iterator[ModelManager]:
    """A manager whose cache lives on the small disk."""
    client = CloudClient(
        base_url=emulator.url, token=lambda: emulator.token, retries=0, version="t"
    )
    downloader = Downloader(
        base_url=emulator.url,
        token=lambda: emulator.token,
        options=DownloadOptions(timeout=5.0, backoff=(0.01, 0.02)),
    )
    manager = ModelManager(
        small_disk / "models",
        catalog=client,
        downloader=downloader,
        options=CacheOptions(probe_timeout=2.0, catalog_timeout=2.0),
    )
    try:
        yield manager
    finally:
        manager.close()
        client.close()


def _free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@pytest.mark.parametrize("chunked", [True, False], ids=["no-length", "with-length"])
def test_a_full_disk_keeps_the_old_file_and_frees_the_space(
    emulator: Emulator,
    files: WeightsServer,
    small_disk: Path,
    disk_manager: ModelManager,
    chunked: bool,
) -> None:
    """An update that does not fit fails soft to v1 and leaves no partial behind."""
    model_uuid = str(uuid.uuid4())
    publish(emulator, files, SMALL, model_uuid=model_uuid)
    disk_manager.ensure_model("yolov8n")
    model_dir = small_disk / "models" / "yolov8n"
    manifest_before = (small_disk / "models" / "manifest.json").read_bytes()
    free_before = _free(small_disk)
    big = os.urandom(3 << 20)
    publish(
        emulator,
        files,
        big,
        model_uuid=model_uuid,
        path="big/yolov8n.pt",
        chunked=chunked,
    )

    result = disk_manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.FALLBACK
    assert "free some space" in result.notes[0]
    assert (model_dir / "yolov8n.pt").read_bytes() == SMALL
    assert (small_disk / "models" / "manifest.json").read_bytes() == manifest_before
    assert partials(model_dir) == []
    assert _free(small_disk) >= free_before - 64 * 1024
    assert len(files.requests("big/yolov8n.pt")) == 1


def test_a_full_disk_on_a_cold_cache_is_a_clear_error(
    emulator: Emulator,
    files: WeightsServer,
    small_disk: Path,
    disk_manager: ModelManager,
) -> None:
    """With nothing cached, a download that does not fit names the space problem."""
    publish(
        emulator, files, os.urandom(3 << 20), model_uuid=str(uuid.uuid4()), chunked=True
    )

    with pytest.raises(ModelUnavailable, match="no space left"):
        disk_manager.ensure_model("yolov8n")

    with contextlib.suppress(FileNotFoundError):
        assert partials(small_disk / "models" / "yolov8n") == []
