"""``cyberwave-edge-core models ...`` as an operator runs it, online and offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.server import Emulator
from tests.support.model_site import publish_signed
from tests.support.ports import free_port
from tests.support.weights_server import WeightsServer

pytestmark = pytest.mark.integration

V1 = os.urandom(200_000)
V2 = os.urandom(250_000)


@pytest.fixture
def files() -> Iterator[WeightsServer]:
    """A running weights server."""
    with WeightsServer() as server:
        yield server


def run(
    config_dir: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``cyberwave-edge-core models <args>`` on ``config_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYBERWAVE_")}
    env.pop("SUDO_UID", None)
    env["CYBERWAVE_EDGE_CONFIG_DIR"] = str(config_dir)
    return subprocess.run(
        [sys.executable, "-m", "edge_core", "models", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_credentials(config_dir: Path, token: str, base_url: str) -> None:
    """credentials.json with ``token`` and ``base_url``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    document = {"token": token, "envs": {"CYBERWAVE_BASE_URL": base_url}}
    (config_dir / "credentials.json").write_text(json.dumps(document))


def stage(config_dir: Path, model_id: str, name: str, data: bytes) -> Path:
    """Copy a weight file into the cache by hand."""
    directory = config_dir / "models" / model_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return directory / name


def rows(config_dir: Path) -> dict[str, dict[str, Any]]:
    """``models list --json`` keyed by model id."""
    done = run(config_dir, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {row["model_id"]: row for row in json.loads(done.stdout)}


def test_ensure_discovers_worker_models_and_reports_broken_files(
    emulator: Emulator, files: WeightsServer, tmp_path: Path
) -> None:
    """Without ids, ``ensure`` uses cyberwave.yml and cw.models.load calls."""
    config_dir = tmp_path / "cfg"
    write_credentials(config_dir, emulator.token, emulator.url)
    publish_signed(emulator, files, "tracker", V1)
    stage(config_dir, "yolov8n", "yolov8n.pt", V2)
    workers = config_dir / "workers"
    workers.mkdir()
    (workers / "cyberwave.yml").write_text("models:\n  - yolov8n\n")
    (workers / "wf_a.py").write_text('m = cw.models.load("tracker")\n')
    (workers / "wf_b.py").write_text('def broken(:\n  cw.models.load("tracker")\n')

    done = run(config_dir, "ensure")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "wf_b.py is not valid Python" in done.stdout
    assert "yolov8n: ready (pre-staged)" in done.stdout
    assert "tracker: ready (downloaded)" in done.stdout
    listed = rows(config_dir)
    assert listed["tracker"]["source"] == "artifact_url"
    assert listed["yolov8n"]["source"] == "prestaged"
    assert listed["tracker"]["verified"] == "yes"


def test_list_shows_file_size_runtime_source_and_verified(tmp_path: Path) -> None:
    """The table names each model's file, size, runtime, source and check state."""
    config_dir = tmp_path / "cfg"
    stage(config_dir, "seg", "seg.onnx", V1)
    assert run(config_dir, "ensure", "seg").returncode == 0

    table = run(config_dir, "list")

    assert table.returncode == 0
    line = next(row for row in table.stdout.splitlines() if row.startswith("seg"))
    for text in ("seg.onnx", "195.3 KiB", "onnxruntime", "prestaged", "yes"):
        assert text in line


def test_verify_exits_1_and_names_a_corrupt_model(
    emulator: Emulator, files: WeightsServer, tmp_path: Path
) -> None:
    """``verify`` re-hashes everything and fails on a rotten downloaded file."""
    config_dir = tmp_path / "cfg"
    write_credentials(config_dir, emulator.token, emulator.url)
    publish_signed(emulator, files, "tracker", V1)
    assert run(config_dir, "ensure", "tracker").returncode == 0
    assert run(config_dir, "verify").returncode == 0
    path = config_dir / "models" / "tracker" / "tracker.pt"
    path.write_bytes(V1[:-1] + bytes([V1[-1] ^ 1]))

    done = run(config_dir, "verify", "--json")

    assert done.returncode == 1
    (verdict,) = json.loads(done.stdout)
    assert verdict["check"] == "corrupt" and verdict["failed"] is True
    assert rows(config_dir)["tracker"]["verified"] == "corrupt"


def test_evict_removes_the_model_and_its_manifest_entry(tmp_path: Path) -> None:
    """``evict --yes`` deletes the directory and the entry; a second evict says so."""
    config_dir = tmp_path / "cfg"
    stage(config_dir, "seg", "seg.onnx", V1)
    assert run(config_dir, "ensure", "seg").returncode == 0

    done = run(config_dir, "evict", "seg", "--yes")

    assert done.returncode == 0 and "seg: evicted" in done.stdout
    assert not (config_dir / "models" / "seg").exists()
    manifest = json.loads((config_dir / "models" / "manifest.json").read_text())
    assert "seg" not in manifest
    assert "was not cached" in run(config_dir, "evict", "seg", "--yes").stdout


def test_a_fully_offline_site_uses_what_is_on_disk(
    emulator: Emulator, files: WeightsServer, tmp_path: Path
) -> None:
    """Backend unreachable: pre-staged and cached models are ready, others fail."""
    config_dir = tmp_path / "cfg"
    write_credentials(config_dir, emulator.token, emulator.url)
    publish_signed(emulator, files, "tracker", V1)
    assert run(config_dir, "ensure", "tracker").returncode == 0
    stage(config_dir, "yolov8n", "yolov8n.pt", V2)
    write_credentials(config_dir, emulator.token, f"http://127.0.0.1:{free_port()}")
    emulator.clear_requests()

    done = run(config_dir, "ensure", "tracker", "yolov8n")
    missing = run(config_dir, "ensure", "segmenter")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "tracker: ready (cached, verified)" in done.stdout
    assert "yolov8n: ready (pre-staged)" in done.stdout
    assert missing.returncode == 1
    assert "segmenter is not in the cache and could not be downloaded" in missing.stdout
    assert "pre-stage the file" in missing.stdout
    assert emulator.requests() == []


def test_no_credentials_and_offline_flag_never_touch_the_network(
    tmp_path: Path,
) -> None:
    """An air-gapped edge without credentials registers pre-staged weights offline."""
    config_dir = tmp_path / "cfg"
    stage(config_dir, "yolov8n", "yolov8n.pt", V1)

    done = run(config_dir, "ensure", "yolov8n", "--offline")
    bare = run(config_dir, "ensure", "yolov8n")

    assert done.returncode == 0 and "ready (pre-staged)" in done.stdout
    assert bare.returncode == 0 and "only files already on disk" in bare.stdout
    sidecar = json.loads(
        (config_dir / "models" / "yolov8n" / "metadata.json").read_text()
    )
    assert sidecar["downloaded_from"] == "prestaged"


def test_unsafe_model_id_is_refused_by_the_cli(tmp_path: Path) -> None:
    """An id that would leave the cache exits 1 with the reason."""
    done = run(tmp_path / "cfg", "ensure", "../../etc", "--offline")

    assert done.returncode == 1
    assert "path separator" in done.stdout
