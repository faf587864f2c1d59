"""``ensure_model`` with files an operator placed: pre-staged weights and
hand-written sidecars, against the emulator and a real file server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_core.models import (
    ModelRejected,
    Outcome,
)
from edge_core.models.stamps import Verified
from tests.support.model_site import V1, V2, Site, sha

pytestmark = pytest.mark.integration


# -- 1. reconcile the disk: pre-staged files -----------------------------------


def test_prestaged_file_is_registered_without_contacting_the_catalog(
    site: Site,
) -> None:
    """A file copied from a USB stick gets a prestaged sidecar, no catalog call."""
    path = site.stage("yolov8n", "yolov8n.pt", V1)

    result = site.make().ensure_model("yolov8n")

    assert result.outcome is Outcome.PRESTAGED
    assert result.path == path
    assert site.catalog_calls() == []
    sidecar = site.sidecar("yolov8n")
    assert sidecar["downloaded_from"] == "prestaged"
    assert sidecar["checksum_sha256"] == sha(V1)
    assert sidecar["runtime"] == "ultralytics"
    assert sidecar["size_bytes"] == len(V1)
    assert "source_url" not in sidecar
    entry = site.manifest()["yolov8n"]
    assert entry["local_path"] == str(path)
    assert entry["downloaded_from"] == "prestaged"
    assert entry["source_url"] is None


def test_prestaged_model_stays_offline_even_if_the_catalog_changes(site: Site) -> None:
    """An intact pre-staged file is returned with no network, whatever the catalog."""
    site.stage("yolov8n", "yolov8n.pt", V1)
    site.publish("yolov8n", V2)
    manager = site.make()
    manager.ensure_model("yolov8n")

    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.PRESTAGED
    assert (site.cache / "yolov8n" / "yolov8n.pt").read_bytes() == V1
    assert site.catalog_calls() == []
    assert site.files.requests() == []


def test_updated_prestaged_file_is_restamped_not_downloaded(site: Site) -> None:
    """Copying a new build over a pre-staged file re-stamps sidecar and manifest."""
    path = site.stage("yolov8n", "yolov8n.pt", V1)
    manager = site.make()
    manager.ensure_model("yolov8n")
    path.write_bytes(V2)

    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.PRESTAGED
    assert site.sidecar("yolov8n")["checksum_sha256"] == sha(V2)
    assert site.manifest()["yolov8n"]["checksum_sha256"] == sha(V2)
    assert site.manifest()["yolov8n"]["size_bytes"] == len(V2)
    assert site.catalog_calls() == []


def test_replaced_file_under_a_new_name_is_registered_again(site: Site) -> None:
    """A pre-staged file swapped for one with another name is what gets registered."""
    old = site.stage("det", "det.pt", V1)
    manager = site.make()
    manager.ensure_model("det")
    old.unlink()
    new = site.stage("det", "det.onnx", V2)

    result = manager.ensure_model("det")

    assert result.path == new
    assert site.sidecar("det")["filename"] == "det.onnx"
    assert site.sidecar("det")["runtime"] == "onnxruntime"


def test_hand_written_sidecar_picks_the_file_and_runtime(site: Site) -> None:
    """With several files, the operator's ``filename`` and ``runtime`` are honoured."""
    site.stage("det", "a.pt", V1)
    chosen = site.stage("det", "b.engine", V2)
    sidecar = {"filename": "b.engine", "runtime": "custom-trt"}
    (site.cache / "det" / "metadata.json").write_text(json.dumps(sidecar))

    result = site.make().ensure_model("det")

    assert result.outcome is Outcome.PRESTAGED
    assert result.path == chosen
    assert result.entry is not None and result.entry.runtime == "custom-trt"
    assert json.loads((site.cache / "det" / "metadata.json").read_text()) == sidecar
    assert site.catalog_calls() == []


def test_several_files_without_a_sidecar_are_refused(site: Site) -> None:
    """An ambiguous directory is refused with a message naming the files."""
    site.stage("det", "a.pt", V1)
    site.stage("det", "b.pt", V2)

    with pytest.raises(ModelRejected, match=r"a\.pt, b\.pt"):
        site.make().ensure_model("det")


def test_hand_written_checksum_mismatch_is_refused_every_time(site: Site) -> None:
    """A file failing the operator's checksum is never handed out or overwritten."""
    site.stage("det", "det.pt", V1)
    site.publish("det", V1)
    (site.cache / "det" / "metadata.json").write_text(
        json.dumps({"checksum_sha256": sha(V2)})
    )
    manager = site.make()

    for _ in range(2):
        with pytest.raises(ModelRejected, match="does not match the checksum"):
            manager.ensure_model("det")

    assert (site.cache / "det" / "det.pt").read_bytes() == V1
    assert site.catalog_calls() == []
    assert manager.list_models()[0].verified is Verified.CORRUPT


def test_hand_written_checksum_match_is_ready(site: Site) -> None:
    """A file matching the operator's checksum is ready and the sidecar kept as is."""
    site.stage("det", "det.pt", V1)
    text = json.dumps(
        {"checksum_sha256": sha(V1), "downloaded_at": "2024-05-06T07:08:09Z"}
    )
    (site.cache / "det" / "metadata.json").write_text(text)

    result = site.make().ensure_model("det")

    assert result.outcome is Outcome.PRESTAGED
    assert (site.cache / "det" / "metadata.json").read_text() == text
    assert site.manifest()["det"]["downloaded_at"] == "2024-05-06T07:08:09Z"


def test_a_symlinked_model_directory_is_refused(site: Site, tmp_path: Path) -> None:
    """A model directory that links outside the cache cannot reach the worker."""
    elsewhere = tmp_path / "usb" / "yolov8n"
    elsewhere.mkdir(parents=True)
    (elsewhere / "yolov8n.pt").write_bytes(V1)
    site.cache.mkdir(parents=True)
    (site.cache / "yolov8n").symlink_to(elsewhere)

    with pytest.raises(ModelRejected, match="symbolic link"):
        site.make().ensure_model("yolov8n")

    assert sorted(os.listdir(elsewhere)) == ["yolov8n.pt"]


def test_a_flat_file_becomes_a_directory(site: Site) -> None:
    """``models/<id>`` as a plain file is moved to ``models/<id>/<id>``."""
    site.cache.mkdir(parents=True)
    (site.cache / "yolov8n.pt").write_bytes(V1)

    result = site.make().ensure_model("yolov8n.pt")

    assert result.path == site.cache / "yolov8n.pt" / "yolov8n.pt"
    assert result.path.read_bytes() == V1
    assert result.outcome is Outcome.PRESTAGED
