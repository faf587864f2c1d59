"""``ensure_model``, step by step, against the backend emulator and a real file server.

The catalog (R16, R17) is the emulator; weight files come from a loopback
HTTP server that can refuse, cut or corrupt them; the cache is a real
directory. Each test drives one rung of the resolution order.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from edge_core.config.paths import Owner
from edge_core.models import (
    ModelUnavailable,
    Outcome,
    ensure_worker_models,
)
from edge_core.models.inventory import Check
from edge_core.models.stamps import Verified
from tests.support.model_site import V1, V2, Site, sha

pytestmark = pytest.mark.integration


# -- 4. intact downloaded files and the catalog probe ---------------------------


def test_cold_cache_downloads_the_signed_artifact(site: Site) -> None:
    """Nothing on disk: the signed URL is used, and its source_url is not stored."""
    site.publish("yolov8n", V1, upstream=True)

    result = site.make().ensure_model("yolov8n")

    assert result.outcome is Outcome.DOWNLOADED
    assert result.path == site.cache / "yolov8n" / "yolov8n.pt"
    assert result.path.read_bytes() == V1
    sidecar = site.sidecar("yolov8n")
    assert sidecar["downloaded_from"] == "artifact_url"
    assert sidecar["source_url"] is None
    assert sidecar["upstream_url"] == site.upstream_url("yolov8n")
    assert site.manifest()["yolov8n"]["source_url"] is None
    assert site.files.requests("upstream/yolov8n.pt") == []
    assert site.files.requests("bucket/yolov8n.pt")[0].header("Authorization") is None


def test_mlmodels_calls_are_minimal(site: Site) -> None:
    """R16 and R17 carry the bearer token and no workspace or other parameter."""
    model_uuid = site.publish("yolov8n", V1)

    site.make().ensure_model("yolov8n")

    find, weights = site.emulator.requests(path_regex="/api/v1/mlmodels")
    assert find.query == {"model_external_id": ["yolov8n"]}
    assert weights.path == f"/api/v1/mlmodels/{model_uuid}/weights"
    assert weights.query == {}
    assert find.auth == weights.auth == "valid"


def test_a_uuid_model_id_is_fetched_by_uuid(site: Site) -> None:
    """A canonical UUID as model id uses ``GET /mlmodels/{uuid}``."""
    model_uuid = site.publish("detector", V1)

    result = site.make().ensure_model(model_uuid)

    assert result.outcome is Outcome.DOWNLOADED
    assert site.catalog_calls()[0] == f"/api/v1/mlmodels/{model_uuid}"
    assert result.path == site.cache / model_uuid / "detector.pt"


def test_intact_download_with_a_matching_catalog_is_not_downloaded_again(
    site: Site,
) -> None:
    """The warm path is one probe: no /weights call and no file transfer."""
    site.publish("yolov8n", V1)
    manager = site.make()
    manager.ensure_model("yolov8n")
    site.emulator.clear_requests()
    transfers = len(site.files.requests())

    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.CACHED
    assert site.catalog_calls() == ["/api/v1/mlmodels"]
    assert len(site.files.requests()) == transfers


@pytest.mark.parametrize("fault", ["500", "hang", "404"])
def test_a_failing_probe_keeps_the_intact_cache(site: Site, fault: str) -> None:
    """Catalog down, slow past the 5 s probe (here 0.5 s) or missing: use the cache."""
    site.publish("yolov8n", V1)
    manager = site.make()
    manager.ensure_model("yolov8n")
    if fault == "500":
        site.emulator.fault("/api/v1/mlmodels", status=500)
    elif fault == "404":
        site.emulator.fault("/api/v1/mlmodels", status=404)
    else:
        site.emulator.fault("/api/v1/mlmodels", hang=True)

    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.CACHED
    assert result.path is not None and result.path.read_bytes() == V1


def test_a_new_catalog_checksum_triggers_a_download(site: Site) -> None:
    """The probe sees a different checksum, so the new build replaces the old file."""
    model_uuid = site.publish("yolov8n", V1)
    manager = site.make()
    manager.ensure_model("yolov8n")
    site.publish("yolov8n", V2, model_uuid=model_uuid)

    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.DOWNLOADED
    assert result.path is not None and result.path.read_bytes() == V2
    assert site.manifest()["yolov8n"]["checksum_sha256"] == sha(V2)
    assert sorted(os.listdir(site.cache / "yolov8n")) == ["metadata.json", "yolov8n.pt"]


def test_bit_rot_in_a_downloaded_file_triggers_a_new_download(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A flipped byte in a downloaded file is corruption: it is fetched again."""
    site.publish("yolov8n", V1)
    manager = site.make()
    path = manager.ensure_model("yolov8n").path
    assert path is not None
    rotten = bytearray(V1)
    rotten[1000] ^= 0xFF
    path.write_bytes(bytes(rotten))
    caplog.set_level(logging.WARNING, logger="edge_core.models")

    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.DOWNLOADED
    assert path.read_bytes() == V1
    assert "is corrupt and will be downloaded again" in caplog.text


def test_bit_rot_without_any_source_is_not_handed_out(site: Site) -> None:
    """A corrupt downloaded file with the catalog gone raises, never returned."""
    model_uuid = site.publish("yolov8n", V1)
    manager = site.make()
    path = manager.ensure_model("yolov8n").path
    assert path is not None
    path.write_bytes(V2)
    site.emulator.remove_mlmodel(model_uuid)

    with pytest.raises(ModelUnavailable, match="is corrupt"):
        manager.ensure_model("yolov8n")


# -- 5. the download sources ---------------------------------------------------


def test_upstream_is_used_when_the_model_is_not_hosted(site: Site) -> None:
    """/weights 404: the upstream URL is the source and is recorded."""
    site.publish("yolov8n", V1, signed=False, upstream=True)

    result = site.make().ensure_model("yolov8n")

    assert result.outcome is Outcome.DOWNLOADED
    sidecar = site.sidecar("yolov8n")
    assert sidecar["downloaded_from"] == "download_url"
    assert sidecar["source_url"] == site.upstream_url("yolov8n")
    assert site.manifest()["yolov8n"]["source_url"] == site.upstream_url("yolov8n")


@pytest.mark.parametrize("status", [403, 500])
def test_a_failing_signed_url_falls_through_to_upstream(
    site: Site, status: int
) -> None:
    """An expired (403) or broken (500) signed URL leads to the upstream copy."""
    site.publish("yolov8n", V1, upstream=True)
    site.files.change("bucket/yolov8n.pt", status=status)

    result = site.make().ensure_model("yolov8n")

    assert result.outcome is Outcome.DOWNLOADED
    assert site.sidecar("yolov8n")["downloaded_from"] == "download_url"
    expected = 1 if status == 403 else 3
    assert len(site.files.requests("bucket/yolov8n.pt")) == expected


def test_a_signed_file_with_the_wrong_checksum_is_rejected_for_upstream(
    site: Site,
) -> None:
    """A wrong artifact is deleted and the upstream copy that verifies is installed."""
    site.publish("yolov8n", V1, upstream=True)
    site.files.add("bucket/yolov8n.pt", V2)

    result = site.make().ensure_model("yolov8n")

    assert result.path is not None and result.path.read_bytes() == V1
    assert site.sidecar("yolov8n")["downloaded_from"] == "download_url"
    leftovers = [n for n in os.listdir(site.cache / "yolov8n") if n.startswith(".")]
    assert leftovers == []


def test_every_source_wrong_leaves_nothing_and_names_each_failure(site: Site) -> None:
    """With only wrong files available, the error lists each source; no file stays."""
    site.publish("yolov8n", V1, upstream=True)
    site.files.add("bucket/yolov8n.pt", V2)
    site.files.add("upstream/yolov8n.pt", V2)

    with pytest.raises(ModelUnavailable) as caught:
        site.make().ensure_model("yolov8n")

    message = str(caught.value)
    assert "artifact_url:" in message and "download_url:" in message
    assert "pre-stage the file" in message
    assert not (site.cache / "yolov8n").exists()


def test_catalog_filename_and_runtime_are_used(site: Site) -> None:
    """The catalog's filename and runtime fields name and describe the file."""
    site.publish(
        "segmenter",
        V1,
        extra={"metadata": {"filename": "seg.onnx", "framework": "onnxruntime-gpu"}},
    )

    result = site.make().ensure_model("segmenter")

    assert result.path == site.cache / "segmenter" / "seg.onnx"
    assert site.sidecar("segmenter")["runtime"] == "onnxruntime-gpu"


def test_no_catalog_checksum_accepts_and_records_the_download(site: Site) -> None:
    """Without a catalog checksum the file's own hash becomes the recorded one."""
    site.publish("yolov8n", V1, checksum=None)

    result = site.make().ensure_model("yolov8n")

    assert result.outcome is Outcome.DOWNLOADED
    assert site.sidecar("yolov8n")["checksum_sha256"] == sha(V1)


def test_ultralytics_without_sources_is_deferred(site: Site) -> None:
    """No hosted copy, no upstream URL, an ultralytics runtime: deferred, no error."""
    site.publish("yolov8n", V1, signed=False, extra={"runtime": "ultralytics"})

    result = site.make().ensure_model("yolov8n")

    assert result.outcome is Outcome.DEFERRED
    assert result.path is None


# -- 6. fail-soft and clear errors ---------------------------------------------


def test_fail_soft_uses_the_intact_copy_with_a_warning(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A new catalog build that cannot be fetched leaves the old intact copy in use."""
    model_uuid = site.publish("yolov8n", V1)
    manager = site.make()
    manager.ensure_model("yolov8n")
    manifest_before = (site.cache / "manifest.json").read_bytes()
    site.publish("yolov8n", V2, model_uuid=model_uuid)
    site.files.change("bucket/yolov8n.pt", cut_after=100_000)
    caplog.set_level(logging.WARNING, logger="edge_core.models")

    result = manager.ensure_model("yolov8n")

    assert result.outcome is Outcome.FALLBACK
    assert result.path is not None and result.path.read_bytes() == V1
    assert (site.cache / "manifest.json").read_bytes() == manifest_before
    assert "using the intact cached file" in caplog.text
    assert result.notes and "no fresh copy could be fetched" in result.notes[0]


def test_nothing_usable_raises_a_clear_error(site: Site) -> None:
    """An unknown model on an empty cache names the model and the next step."""
    with pytest.raises(ModelUnavailable, match="the catalog does not know this model"):
        site.make().ensure_model("nonexistent")


def test_offline_manager_with_an_empty_cache_says_so(site: Site) -> None:
    """Without catalog or network the error says the edge is offline."""
    with pytest.raises(ModelUnavailable, match="offline"):
        site.make(online=False).ensure_model("yolov8n")


# -- manifest, list, verify, evict ---------------------------------------------


def test_a_corrupt_manifest_is_rebuilt_from_the_sidecars(site: Site) -> None:
    """A garbled manifest is rebuilt with every model from the sidecars on disk."""
    site.publish("a", V1)
    site.stage("b", "b.onnx", V2)
    manager = site.make()
    manager.ensure_model("a")
    manager.ensure_model("b")
    expected = site.manifest()
    (site.cache / "manifest.json").write_text("{ this is not json")

    manager.ensure_model("b")

    assert site.manifest() == expected


def test_a_hand_edited_manifest_is_not_trusted(site: Site) -> None:
    """Entries pointing elsewhere or with a forged checksum are rebuilt from disk."""
    site.publish("a", V1)
    site.stage("b", "b.onnx", V2)
    manager = site.make()
    manager.ensure_model("a")
    manager.ensure_model("b")
    expected = site.manifest()
    forged = site.manifest()
    forged["a"]["checksum_sha256"] = "0" * 64
    forged["b"]["local_path"] = "/etc/passwd"
    forged["ghost"] = dict(forged["a"], model_id="ghost")
    (site.cache / "manifest.json").write_text(json.dumps(forged))

    manager.ensure_model("b")

    assert site.manifest() == expected


def test_list_and_verify_report_corruption(site: Site) -> None:
    """``verify`` re-hashes and flags a rotten file; ``list`` then shows it corrupt."""
    site.publish("a", V1)
    site.stage("b", "b.onnx", V2)
    manager = site.make()
    path_a = manager.ensure_model("a").path
    manager.ensure_model("b")
    assert path_a is not None
    rows = {row.model_id: row for row in manager.list_models()}
    assert rows["a"].verified is Verified.YES and rows["a"].source == "artifact_url"
    assert rows["b"].source == "prestaged" and rows["b"].runtime == "onnxruntime"
    with open(path_a, "r+b") as handle:
        handle.seek(10)
        handle.write(b"\x00\x01\x02")
    assert manager.list_models()[0].verified is Verified.STALE

    verdicts = {item.model_id: item for item in manager.verify_all()}

    assert verdicts["a"].check is Check.CORRUPT and verdicts["a"].failed
    assert verdicts["b"].check is Check.OK
    assert manager.list_models()[0].verified is Verified.CORRUPT


def test_evict_removes_a_prestaged_model_so_it_is_downloaded(site: Site) -> None:
    """Evicting is how an operator swaps a pre-staged file for the catalog's."""
    site.stage("yolov8n", "yolov8n.pt", V1)
    site.publish("yolov8n", V2)
    manager = site.make()
    manager.ensure_model("yolov8n")

    assert manager.evict("yolov8n") is True
    assert "yolov8n" not in site.manifest()
    assert manager.evict("yolov8n") is False

    result = manager.ensure_model("yolov8n")
    assert result.outcome is Outcome.DOWNLOADED
    assert result.path is not None and result.path.read_bytes() == V2


def test_empty_staging_directory_and_stale_partials_are_tidied(site: Site) -> None:
    """A directory holding only an old partial download is removed by an ensure."""
    staging = site.cache / "yolov8n"
    staging.mkdir(parents=True)
    partial = staging / ".dl_0123456789abcdef.part"
    partial.write_bytes(b"old")
    os.utime(partial, (1, 1))
    site.publish("yolov8n", V1, signed=False)

    with pytest.raises(ModelUnavailable):
        site.make().ensure_model("yolov8n")

    assert not staging.exists()


def test_everything_written_is_handed_to_the_config_owner(site: Site) -> None:
    """Run as root, the cache hands every file and directory it writes to the owner."""
    owner = Owner(54321, 54322)
    site.publish("tracker", V1)
    manager = site.make(owner=owner)

    manager.ensure_model("tracker")
    staged = site.stage("yolov8n", "yolov8n.pt", V2)
    manager.ensure_model("yolov8n")

    written = [
        site.cache,
        site.cache / ".locks",
        site.cache / ".locks" / "tracker.lock",
        site.cache / ".locks" / "index.lock",
        site.cache / "manifest.json",
        site.cache / ".verified.json",
        site.cache / "tracker",
        site.cache / "tracker" / "tracker.pt",
        site.cache / "tracker" / "metadata.json",
        site.cache / "yolov8n" / "metadata.json",
    ]
    for path in written:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (54321, 54322), path
    assert staged.stat().st_uid == os.getuid()
    assert oct(site.cache.stat().st_mode & 0o777) == "0o755"
    assert oct((site.cache / "tracker" / "tracker.pt").stat().st_mode & 0o777) == (
        "0o644"
    )


def test_worker_models_are_discovered_and_ensured_together(
    site: Site, tmp_path: Path
) -> None:
    """One failing model is reported while the others are made ready."""
    site.publish("tracker", V1)
    site.stage("yolov8n", "yolov8n.pt", V2)
    workers = tmp_path / "workers"
    workers.mkdir()
    (workers / "cyberwave.yml").write_text("models: [yolov8n, missing]\n")
    (workers / "wf_a.py").write_text('t = cw.models.load("tracker")\n')
    (workers / "wf_b.py").write_text("def broken(:\n")

    outcome = ensure_worker_models(site.make(), workers)

    assert not outcome.ok
    assert [r.model_id for r in outcome.ready] == ["yolov8n", "tracker"]
    assert [e.model_id for e in outcome.failed] == ["missing"]
    assert len(outcome.problems) == 1 and "wf_b.py" in outcome.problems[0]
