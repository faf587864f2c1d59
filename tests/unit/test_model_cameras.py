"""The camera device chosen for each twin (cameras.json and metadata.cameras)."""

from __future__ import annotations

import pytest

from edge_core.model.cameras import device_source, twin_to_device, video_devices


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "/dev/video0"),
        (3, "/dev/video3"),
        ("/dev/v4l/by-id/usb-Cam-video-index0", "/dev/v4l/by-id/usb-Cam-video-index0"),
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
        ("serial:ABC123", None),
        (-1, None),
        (True, None),
        ("", None),
        (None, None),
        ([0], None),
    ],
)
def test_device_source(value: object, expected: str | None) -> None:
    """An index maps to /dev/video<N>, a stable source stays, serial: gives none."""
    assert device_source(value) == expected


def test_edge_entries_win_and_local_ones_fill_gaps() -> None:
    """The edge object's entries win; local entries it lacks are merged in."""
    local = {"twin_to_device": {"a": 0, "b": 1}}
    edge = {"twin_to_device": {"a": "/dev/v4l/by-id/cam", "c": 2}}
    assert twin_to_device(local, edge) == {"a": "/dev/v4l/by-id/cam", "c": 2, "b": 1}


def test_video_devices_skip_unusable_entries() -> None:
    """Only twins with a usable device appear in the result."""
    local = {"twin_to_device": {"a": 0, "b": "serial:1", "c": None}}
    assert video_devices(local) == {"a": "/dev/video0"}


@pytest.mark.parametrize("cameras", [None, [], "x", {"twin_to_device": [1]}])
def test_malformed_camera_files(cameras: object) -> None:
    """Malformed camera objects give no devices instead of an error."""
    assert video_devices(cameras, cameras) == {}
