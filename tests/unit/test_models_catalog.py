"""Reading catalog objects and weights answers (protocol.md 1.10)."""

from __future__ import annotations

from typing import Any

import pytest

from edge_core.models.catalog import parse_catalog_entry, parse_signed_url

SHA = "a" * 64
OTHER_SHA = "b" * 64
UUID = "5D2E0C3A-1111-4222-8333-944455556666"


def test_checksum_lookup_order_top_level_then_metadata() -> None:
    """``checksum_sha256``, ``sha256``, ``checksum``; the top level before metadata."""
    entry = parse_catalog_entry(
        "m", {"sha256": OTHER_SHA, "checksum_sha256": SHA, "metadata": {}}
    )
    assert entry.checksum == SHA

    entry = parse_catalog_entry("m", {"metadata": {"checksum": SHA.upper()}})
    assert entry.checksum == SHA

    entry = parse_catalog_entry(
        "m", {"checksum": f"sha256:{SHA}", "metadata": {"sha256": OTHER_SHA}}
    )
    assert entry.checksum == SHA


def test_a_checksum_that_is_not_sha256_is_ignored() -> None:
    """A malformed checksum means "no checksum", never a wrong expectation."""
    assert parse_catalog_entry("m", {"checksum_sha256": "md5:abc"}).checksum is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {
                "download_url": "https://a/top.pt",
                "metadata": {"download_url": "https://a/meta.pt"},
            },
            "https://a/top.pt",
        ),
        (
            {
                "metadata": {
                    "upstream_weights_url": "https://a/up.pt",
                    "artifact_url": "https://a/art.pt",
                }
            },
            "https://a/up.pt",
        ),
        ({"metadata": {"artifact_url": "https://a/art.pt"}}, "https://a/art.pt"),
        ({"download_url": "ftp://a/x.pt"}, None),
        ({}, None),
    ],
)
def test_upstream_url_lookup_order(data: dict[str, Any], expected: str | None) -> None:
    """Top ``download_url``, then metadata download/upstream/artifact URLs."""
    assert parse_catalog_entry("m", data).upstream_url == expected


def test_runtime_lookup_order() -> None:
    """runtime, framework, edge_runtime, edge_package; the top level first."""
    data = {"framework": "torch", "metadata": {"runtime": "onnxruntime"}}
    assert parse_catalog_entry("m", data).runtime == "torch"
    data = {"metadata": {"edge_package": "tflite", "edge_runtime": "tensorrt"}}
    assert parse_catalog_entry("m", data).runtime == "tensorrt"


def test_uuid_must_look_like_a_uuid() -> None:
    """A canonical-looking uuid is kept (lowercased); anything else is dropped."""
    assert parse_catalog_entry("m", {"uuid": UUID}).uuid == UUID.lower()
    assert parse_catalog_entry("m", {"uuid": "yolov8n"}).uuid is None
    assert parse_catalog_entry("m", {"uuid": 12}).uuid is None


@pytest.mark.parametrize(
    ("data", "source", "expected"),
    [
        ({"filename": "best.onnx", "model_external_id": "y.pt"}, None, "best.onnx"),
        ({"metadata": {"filename": "meta.tflite"}}, None, "meta.tflite"),
        ({"model_external_id": "yolov8n.pt"}, "https://s/x/other.pt", "yolov8n.pt"),
        ({"model_external_id": "yolov8n"}, "https://s/b/w.onnx?sig=1", "w.onnx"),
        ({"model_external_id": "yolov8n"}, "https://s/b/weights?sig=1", "m.pt"),
        ({"filename": "../evil.pt"}, "https://s/b/ok.pt", "ok.pt"),
        ({}, "https://s/b/%2E%2E", "m.pt"),
        ({}, None, "m.pt"),
    ],
)
def test_filename_rule(data: dict[str, Any], source: str | None, expected: str) -> None:
    """filename, a dotted external id, the URL's last segment, then <id>.pt."""
    assert parse_catalog_entry("m", data).pick_filename(source) == expected


def test_signed_url_prefers_signed_url_over_url() -> None:
    """The R17 answer's ``signed_url`` wins over ``url``; nulls and junk are skipped."""
    assert parse_signed_url({"signed_url": "https://g/a", "url": "https://g/b"}) == (
        "https://g/a"
    )
    assert parse_signed_url({"signed_url": None, "url": "https://g/b"}) == "https://g/b"
    assert parse_signed_url({"signed_url": "", "url": None}) is None
    assert parse_signed_url({"signed_url": "file:///etc/passwd"}) is None
