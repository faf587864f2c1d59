"""The model cache against a hostile field engineer's disk, catalog and console.

Odd model ids, odd file names, sidecars written on other systems, links and
empty directories left by a half-finished copy: each must either work or be
refused with one line naming the file and the fix, and nothing an operator
placed may be deleted or rewritten (except the documented re-stamp). The
catalog is the emulator, weight files come from a real loopback server and
the cache is a real directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge_core.cloud.rest import CloudClient
from edge_core.models import (
    CacheOptions,
    Downloader,
    DownloadOptions,
    ModelManager,
    ModelRejected,
    ModelUnavailable,
    Outcome,
)
from tests.emulator.server import Emulator
from tests.support.model_site import publish_signed
from tests.support.weights_server import WeightsServer

pytestmark = pytest.mark.integration

V1 = os.urandom(120_000)
V2 = os.urandom(150_000)


def sha(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def files() -> Iterator[WeightsServer]:
    """A running weights server."""
    with WeightsServer() as server:
        yield server


@pytest.fixture
def make(emulator: Emulator, tmp_path: Path) -> Iterator[Callable[..., ModelManager]]:
    """Build managers on ``tmp_path/models`` (online or offline), fast timings."""
    made: list[tuple[ModelManager, CloudClient]] = []

    def build(*, online: bool = True) -> ModelManager:
        client = CloudClient(
            base_url=emulator.url,
            token=lambda: emulator.token,
            retries=0,
            version="test",
        )
        downloader = Downloader(
            base_url=emulator.url,
            token=lambda: emulator.token,
            options=DownloadOptions(timeout=2.0, backoff=(0.01, 0.02)),
        )
        manager = ModelManager(
            tmp_path / "models",
            catalog=client if online else None,
            downloader=downloader if online else None,
            options=CacheOptions(
                probe_timeout=0.5,
                catalog_timeout=2.0,
                weights_timeout=2.0,
                lock_timeout=10.0,
            ),
        )
        made.append((manager, client))
        return manager

    yield build
    for manager, client in made:
        manager.close()
        client.close()


def stage(cache: Path, model_id: str, name: str, data: bytes) -> Path:
    """Copy a file into the cache by hand."""
    directory = cache / model_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return directory / name


# -- model ids that name the cache's own files ---------------------------------


@pytest.mark.parametrize("model_id", ["manifest.json", "yolov8n.tmp"])
def test_a_model_id_naming_a_cache_file_is_refused(
    make: Callable[..., ModelManager], tmp_path: Path, model_id: str
) -> None:
    """``ensure manifest.json`` is refused and never turns the manifest into a dir."""
    cache = tmp_path / "models"
    manager = make(online=False)
    stage(cache, "yolov8n", "yolov8n.pt", V1)
    manager.ensure_model("yolov8n")
    manifest = (cache / "manifest.json").read_bytes()

    with pytest.raises(ModelRejected, match="reserved"):
        manager.ensure_model(model_id)
    with pytest.raises(ModelRejected, match="reserved"):
        manager.evict(model_id)

    assert (cache / "manifest.json").read_bytes() == manifest
    assert manager.ensure_model("yolov8n").outcome is Outcome.PRESTAGED


# -- odd file names ------------------------------------------------------------


@pytest.mark.parametrize("name", ["line\nbreak.pt", "manifest.json"])
def test_a_file_the_cache_cannot_name_is_not_registered(
    make: Callable[..., ModelManager], tmp_path: Path, name: str
) -> None:
    """A file whose name a sidecar cannot hold never bricks the model it sits in."""
    cache = tmp_path / "models"
    odd = stage(cache, "yolov8n", name, V2)
    good = stage(cache, "yolov8n", "yolov8n.pt", V1)
    manager = make(online=False)

    first = manager.ensure_model("yolov8n")
    second = manager.ensure_model("yolov8n")

    assert first.path == good and second.outcome is Outcome.PRESTAGED
    assert odd.read_bytes() == V2


def test_unicode_and_spaces_in_a_file_name_are_fine(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """A pre-staged ``modèle v2 (copie).pt`` is registered and stays usable."""
    path = stage(tmp_path / "models", "yolov8n", "modèle v2 (copie).pt", V1)
    manager = make(online=False)

    manager.ensure_model("yolov8n")
    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.PRESTAGED and result.path == path


# -- sidecars written elsewhere -----------------------------------------------


def test_a_sidecar_saved_with_a_byte_order_mark_is_honoured(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """A ``metadata.json`` saved by Windows Notepad (UTF-8 BOM) is read, not refused."""
    cache = tmp_path / "models"
    path = stage(cache, "yolov8n", "yolov8n.pt", V1)
    document = {"filename": "yolov8n.pt", "checksum_sha256": sha(V1).upper()}
    sidecar = cache / "yolov8n" / "metadata.json"
    sidecar.write_bytes(b"\xef\xbb\xbf" + json.dumps(document).encode())
    written = sidecar.read_bytes()

    result = make(online=False).ensure_model("yolov8n")

    assert result.outcome is Outcome.PRESTAGED and result.path == path
    assert sidecar.read_bytes() == written


def test_a_bom_sidecar_checksum_still_refuses_a_wrong_file(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """The checksum of a BOM sidecar protects the file like any hand-written one."""
    cache = tmp_path / "models"
    stage(cache, "yolov8n", "yolov8n.pt", V2)
    document = {"filename": "yolov8n.pt", "checksum_sha256": sha(V1)}
    (cache / "yolov8n" / "metadata.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps(document).encode()
    )

    with pytest.raises(ModelRejected, match="does not match the checksum"):
        make(online=False).ensure_model("yolov8n")


def test_an_unknown_downloaded_from_is_an_operators_sidecar(
    emulator: Emulator,
    files: WeightsServer,
    make: Callable[..., ModelManager],
    tmp_path: Path,
) -> None:
    """A sidecar with ``"downloaded_from": "usb"`` is the operator's, never deleted."""
    cache = tmp_path / "models"
    publish_signed(emulator, files, "yolov8n", V2)
    path = stage(cache, "yolov8n", "weights-from-usb.pt", V1)
    document = {
        "filename": "weights-from-usb.pt",
        "checksum_sha256": sha(V2),
        "downloaded_from": "usb",
    }
    sidecar = cache / "yolov8n" / "metadata.json"
    sidecar.write_text(json.dumps(document))

    with pytest.raises(ModelRejected, match="does not match the checksum"):
        make().ensure_model("yolov8n")

    assert path.read_bytes() == V1
    assert json.loads(sidecar.read_text()) == document
    assert files.requests() == []


# -- what a half-finished copy leaves ------------------------------------------


def test_an_empty_directory_made_by_the_operator_is_kept(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """``mkdir models/yolov8n`` before the copy starts survives an ensure in between."""
    directory = tmp_path / "models" / "yolov8n"
    directory.mkdir(parents=True)

    with pytest.raises(ModelUnavailable, match="is not in the cache"):
        make(online=False).ensure_model("yolov8n")

    assert directory.is_dir()


def test_an_empty_directory_survives_a_failed_download(
    emulator: Emulator,
    files: WeightsServer,
    make: Callable[..., ModelManager],
    tmp_path: Path,
) -> None:
    """A download that fails does not take away the directory the operator made."""
    directory = tmp_path / "models" / "yolov8n"
    directory.mkdir(parents=True)
    publish_signed(emulator, files, "yolov8n", V1)
    files.change("bucket/yolov8n.pt", status=403)

    with pytest.raises(ModelUnavailable, match="403"):
        make().ensure_model("yolov8n")

    assert directory.is_dir()


def test_a_directory_the_cache_made_for_a_failed_download_is_removed(
    emulator: Emulator,
    files: WeightsServer,
    make: Callable[..., ModelManager],
    tmp_path: Path,
) -> None:
    """The cache's own staging directory of a refused download does not linger."""
    publish_signed(emulator, files, "yolov8n", V1)
    files.change("bucket/yolov8n.pt", status=403)

    with pytest.raises(ModelUnavailable, match="403"):
        make().ensure_model("yolov8n")

    assert not (tmp_path / "models" / "yolov8n").exists()


def test_a_zero_byte_file_is_refused_as_an_unfinished_copy(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """An empty weight file is not registered or handed out; the fix is named."""
    path = stage(tmp_path / "models", "yolov8n", "yolov8n.pt", b"")

    with pytest.raises(ModelRejected, match=r"is empty.*\.tmp"):
        make(online=False).ensure_model("yolov8n")

    assert path.read_bytes() == b""
    assert not (tmp_path / "models" / "yolov8n" / "metadata.json").exists()


def test_a_symlinked_weight_file_is_refused_and_never_replaced(
    emulator: Emulator,
    files: WeightsServer,
    make: Callable[..., ModelManager],
    tmp_path: Path,
) -> None:
    """A link the worker cannot follow is named in the error, not downloaded over."""
    publish_signed(emulator, files, "yolov8n", V1)
    target = tmp_path / "elsewhere.pt"
    target.write_bytes(V2)
    link = tmp_path / "models" / "yolov8n" / "yolov8n.pt"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)

    with pytest.raises(ModelRejected, match=r"yolov8n\.pt is a symbolic link"):
        make().ensure_model("yolov8n")

    assert link.is_symlink() and target.read_bytes() == V2
    assert files.requests() == []


# -- a read-only cache ----------------------------------------------------------


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` bind-mounted read-only over itself for the block."""
    steps = (
        ["mount", "--bind", str(directory), str(directory)],
        ["mount", "-o", "remount,bind,ro", str(directory)],
    )
    mounted = False
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(
                    f"cannot make {directory} read-only ({done.stderr.strip()}); "
                    f"the read-only cache tests need mount (run as root)",
                    pytrace=False,
                )
            mounted = True
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


def test_a_registered_model_is_ready_from_a_read_only_cache(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """A cache remounted read-only still hands out its intact, registered models."""
    cache = tmp_path / "models"
    path = stage(cache, "yolov8n", "yolov8n.pt", V1)
    make(online=False).ensure_model("yolov8n")

    with read_only(cache):
        result = make(online=False).ensure_model("yolov8n")

    assert result.outcome is Outcome.PRESTAGED and result.path == path


def test_verify_judges_a_read_only_cache(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """``models verify`` on a read-only cache judges what it can and names the fix."""
    cache = tmp_path / "models"
    stage(cache, "good", "good.pt", V1)
    bad = stage(cache, "bad", "bad.pt", V1)
    (cache / "bad" / "metadata.json").write_text(
        json.dumps({"filename": "bad.pt", "checksum_sha256": sha(V2)})
    )
    manager = make(online=False)
    manager.ensure_model("good")
    with pytest.raises(ModelRejected):
        manager.ensure_model("bad")
    stage(cache, "new", "new.pt", V2)

    with read_only(cache):
        verdicts = {v.model_id: v for v in make(online=False).verify_all()}

    assert verdicts["good"].check.value == "ok"
    assert verdicts["bad"].check.value == "corrupt" and verdicts["bad"].failed
    assert "remount" in verdicts["new"].detail
    assert "run as root" not in verdicts["new"].detail
    assert bad.read_bytes() == V1


def test_a_read_only_cache_names_the_file_and_the_fix(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """A re-stamp that cannot be written names the directory and the remount."""
    cache = tmp_path / "models"
    path = stage(cache, "yolov8n", "yolov8n.pt", V1)
    make(online=False).ensure_model("yolov8n")
    path.write_bytes(V2)

    with read_only(cache), pytest.raises(ModelUnavailable) as caught:
        make(online=False).ensure_model("yolov8n")

    message = str(caught.value)
    assert "read-only" in message.lower() and "remount" in message
    assert str(cache / "yolov8n") in message


# -- the console ---------------------------------------------------------------


def run_cli(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``cyberwave-edge-core models <args>`` on ``config_dir``, piped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CYBERWAVE_")}
    env.pop("SUDO_UID", None)
    env["CYBERWAVE_EDGE_CONFIG_DIR"] = str(config_dir)
    return subprocess.run(
        [sys.executable, "-m", "edge_core", "models", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_names_a_corrupt_model_and_the_fix_on_one_line(
    make: Callable[..., ModelManager], tmp_path: Path
) -> None:
    """The verdict on a corrupt file is one line with both hashes and the command."""
    config_dir = tmp_path
    cache = config_dir / "models"
    path = stage(cache, "yolov8n", "yolov8n.pt", V1)
    document: dict[str, Any] = {"filename": "yolov8n.pt", "checksum_sha256": sha(V2)}
    (cache / "yolov8n" / "metadata.json").write_text(json.dumps(document))

    done = run_cli(config_dir, "verify")

    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if "yolov8n" in line]
    assert len(lines) == 1, done.stdout
    assert sha(V1) in lines[0] and sha(V2) in lines[0]
    assert "models evict yolov8n" in lines[0]
    assert path.read_bytes() == V1


def test_ensure_errors_are_single_lines_however_long_the_path(
    tmp_path: Path,
) -> None:
    """A refusal naming a long path still reaches a log as one unbroken line."""
    config_dir = tmp_path / ("deep-" * 30) / "cfg"
    cache = config_dir / "models"
    stage(cache, "yolov8n", "yolov8n.pt", V1)
    (cache / "yolov8n" / "metadata.json").write_text("{not json")

    done = run_cli(config_dir, "ensure", "yolov8n", "--offline")

    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    assert str(cache / "yolov8n" / "metadata.json") in lines[0]
    assert "delete the file" in lines[0]


def test_a_crash_before_the_sidecar_never_turns_a_download_into_prestaged(
    emulator: Emulator,
    files: WeightsServer,
    make: Callable[..., ModelManager],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If recording a download fails, the next call downloads again instead
    of taking the file for an operator's pre-staged copy."""
    import edge_core.models.manager as manager_module

    publish_signed(emulator, files, "yolov8n", V1)
    real = manager_module.write_sidecar

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manager_module, "write_sidecar", disk_full)
    with pytest.raises(Exception, match=r"No space left|space"):
        make().ensure_model("yolov8n")
    monkeypatch.setattr(manager_module, "write_sidecar", real)

    result = make().ensure_model("yolov8n")
    sidecar = json.loads(
        (tmp_path / "models" / "yolov8n" / "metadata.json").read_text()
    )
    assert sidecar["downloaded_from"] != "prestaged"
    assert sidecar["checksum_sha256"] == sha(V1)
    assert result.path is not None and result.path.read_bytes() == V1
