"""The on-disk formats of the model cache: names, sidecars, manifest, stamps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_core.models.errors import ModelRejected
from edge_core.models.layout import check_model_id, infer_runtime, weight_candidates
from edge_core.models.manifest import (
    ManifestEntry,
    load_manifest,
    parse_entry,
    utc_stamp,
    write_manifest,
)
from edge_core.models.sidecar import Sidecar, read_sidecar, write_sidecar
from edge_core.models.stamps import Stamp, Verified

SHA = "c" * 64


@pytest.mark.parametrize("model_id", ["yolov8n", "background-subtraction", "a.b_c"])
def test_valid_model_ids_pass(model_id: str) -> None:
    """Plain names are accepted unchanged."""
    assert check_model_id(model_id) == model_id


@pytest.mark.parametrize(
    "model_id", ["", "../x", "a/b", "a\\b", ".hidden", "..", "a\x00b", "x" * 256, 5]
)
def test_unsafe_model_ids_are_refused(model_id: object) -> None:
    """Ids that are empty, hidden, too long or could leave the cache are refused."""
    with pytest.raises(ModelRejected):
        check_model_id(model_id)


@pytest.mark.parametrize(
    ("name", "runtime"),
    [
        ("y.pt", "ultralytics"),
        ("y.PTH", "torch"),
        ("y.onnx", "onnxruntime"),
        ("y.tflite", "tflite"),
        ("y.engine", "tensorrt"),
        ("y.trt", "tensorrt"),
        ("y.xml", "opencv"),
        ("y.bin", None),
    ],
)
def test_runtime_is_inferred_from_the_extension(name: str, runtime: str | None) -> None:
    """The extension table of protocol.md 3.10."""
    assert infer_runtime(name) == runtime


def test_weight_candidates_skip_sidecar_hidden_temp_and_links(tmp_path: Path) -> None:
    """Only regular, visible, non-temporary files other than metadata.json count."""
    for name in ("b.pt", "a.onnx", "metadata.json", ".dl_x.part", "x.tmp", ".hidden"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "y.__cw_normalize__").write_bytes(b"x")
    (tmp_path / "link.pt").symlink_to(tmp_path / "b.pt")
    (tmp_path / "sub").mkdir()

    assert [p.name for p in weight_candidates(tmp_path)] == ["a.onnx", "b.pt"]


def test_generated_sidecars_carry_exactly_the_protocol_keys(tmp_path: Path) -> None:
    """A prestaged sidecar has 7 keys; a downloaded one adds source and upstream URL."""
    prestaged = Sidecar("m", "m.pt", "ultralytics", SHA, 3, utc_stamp(), "prestaged")
    write_sidecar(tmp_path, prestaged)
    document = json.loads((tmp_path / "metadata.json").read_text())
    assert list(document) == [
        "model_id",
        "runtime",
        "filename",
        "checksum_sha256",
        "size_bytes",
        "downloaded_at",
        "downloaded_from",
    ]
    assert oct(os.stat(tmp_path / "metadata.json").st_mode & 0o777) == "0o644"

    downloaded = Sidecar(
        "m", "m.pt", None, SHA, 3, utc_stamp(), "artifact_url", None, "https://u/m.pt"
    )
    write_sidecar(tmp_path, downloaded)
    document = json.loads((tmp_path / "metadata.json").read_text())
    assert document["source_url"] is None
    assert document["upstream_url"] == "https://u/m.pt"
    assert len(document) == 9


def test_hand_written_sidecar_is_told_apart_and_normalized(tmp_path: Path) -> None:
    """No ``downloaded_from`` means hand-written; its checksum is normalized."""
    (tmp_path / "metadata.json").write_text(
        json.dumps({"filename": "best.pt", "checksum_sha256": SHA.upper(), "x": 1})
    )

    sidecar = read_sidecar(tmp_path, model_id="m")

    assert sidecar is not None
    assert sidecar.hand_written and sidecar.prestaged
    assert sidecar.checksum_sha256 == SHA
    assert sidecar.filename == "best.pt"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"checksum_sha256": "1234"}),
        json.dumps({"filename": "../../etc/passwd"}),
        json.dumps({"filename": "metadata.json"}),
    ],
)
def test_unusable_sidecars_are_refused_not_guessed(
    tmp_path: Path, content: str
) -> None:
    """A sidecar that cannot be trusted refuses the model with the file named."""
    (tmp_path / "metadata.json").write_text(content)

    with pytest.raises(ModelRejected, match=r"metadata\.json"):
        read_sidecar(tmp_path, model_id="m")


def test_missing_sidecar_reads_as_none(tmp_path: Path) -> None:
    """No sidecar is not an error."""
    assert read_sidecar(tmp_path, model_id="m") is None


def _entry(cache: Path, **changes: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "model_id": "m",
        "local_path": str(cache / "m" / "m.pt"),
        "size_bytes": 3,
        "downloaded_at": "2025-01-02T03:04:05Z",
        "source_url": None,
        "checksum_sha256": SHA,
        "runtime": "ultralytics",
        "downloaded_from": "prestaged",
    }
    raw.update(changes)
    return raw


def test_manifest_entries_are_checked_field_by_field(tmp_path: Path) -> None:
    """Wrong types, foreign paths, odd sources and bad checksums are rejected."""
    assert parse_entry(tmp_path, "m", _entry(tmp_path)) is not None
    bad = [
        _entry(tmp_path, model_id="other"),
        _entry(tmp_path, local_path="/etc/passwd"),
        _entry(tmp_path, local_path=str(tmp_path / "x" / "m.pt")),
        _entry(tmp_path, local_path=str(tmp_path / "m" / "metadata.json")),
        _entry(tmp_path, size_bytes="3"),
        _entry(tmp_path, size_bytes=True),
        _entry(tmp_path, downloaded_from="somewhere"),
        _entry(tmp_path, checksum_sha256="ABC"),
        _entry(tmp_path, downloaded_at=None),
        "not an object",
    ]
    for raw in bad:
        assert parse_entry(tmp_path, "m", raw) is None, raw
    assert parse_entry(tmp_path, "..", _entry(tmp_path, model_id="..")) is None


def test_manifest_round_trip_uses_indent_2_and_sorted_ids(tmp_path: Path) -> None:
    """The manifest is an object keyed by model id, indent 2, trailing newline."""
    entries = {
        model_id: ManifestEntry(
            model_id,
            str(tmp_path / model_id / "w.pt"),
            1,
            utc_stamp(),
            None,
            SHA,
            None,
            "prestaged",
        )
        for model_id in ("zeta", "alpha")
    }

    path = write_manifest(tmp_path, entries)

    text = path.read_text()
    assert text.endswith("}\n")
    assert text.startswith('{\n  "alpha": {\n    "model_id": "alpha"')
    assert load_manifest(tmp_path).entries == entries


@pytest.mark.parametrize("content", ["{broken", "[]", '"text"'])
def test_corrupt_manifest_loads_empty_with_a_problem(
    tmp_path: Path, content: str
) -> None:
    """A manifest that is not a JSON object yields no entries and one problem line."""
    (tmp_path / "manifest.json").write_text(content)

    read = load_manifest(tmp_path)

    assert read.entries == {}
    assert len(read.problems) == 1


def test_utc_stamp_format() -> None:
    """``downloaded_at`` is ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    assert utc_stamp(0) == "1970-01-01T00:00:00Z"


def test_stamp_reports_changed_and_corrupt_files(tmp_path: Path) -> None:
    """A stamp is "yes" for the same file, "stale" once it changed, "corrupt" if bad."""
    path = tmp_path / "w.pt"
    path.write_bytes(b"one")
    good = Stamp.of(path, sha256=SHA, ok=True, checked_at=utc_stamp())
    bad = Stamp.of(path, sha256=SHA, ok=False, checked_at=utc_stamp())

    assert good.status(path) is Verified.YES
    assert bad.status(path) is Verified.CORRUPT

    path.write_bytes(b"two!")
    assert good.status(path) is Verified.STALE
    assert good.status(tmp_path / "absent") is Verified.NEVER
