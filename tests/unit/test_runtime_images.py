"""Image reference rules and pull progress decoding, without Docker."""

from __future__ import annotations

import pytest

from edge_core.runtime.images import image_tag, is_local_tag, is_unauthorized, to_event


@pytest.mark.parametrize(
    ("ref", "tag"),
    [
        ("cyberwaveos/so101-driver", None),
        ("cyberwaveos/so101-driver:dev", "dev"),
        ("localhost:5000/driver", None),
        ("localhost:5000/driver:1.2", "1.2"),
        ("repo@sha256:abcd", None),
    ],
)
def test_image_tag_follows_the_docker_rule(ref: str, tag: str | None) -> None:
    """The tag is the text after the last ':' when no '/' follows it."""
    assert image_tag(ref) == tag


@pytest.mark.parametrize(
    ("ref", "local"),
    [
        ("cyberwaveos/camera-driver:local", True),
        ("cyberwaveos/camera-driver:local-gpu", True),
        ("cyberwaveos/camera-driver:dev-local", True),
        ("cyberwaveos/camera-driver:locally", False),
        ("cyberwaveos/camera-driver", False),
        ("local:5000/driver", False),
    ],
)
def test_local_tags(ref: str, local: bool) -> None:
    """local, local-* and *-local tags are local builds (protocol 4.3)."""
    assert is_local_tag(ref) is local


def test_unauthorized_messages_are_recognised() -> None:
    """Both registry phrasings of refused credentials trigger the retry."""
    assert is_unauthorized("unauthorized: authentication required")
    assert is_unauthorized("Get x: incorrect username or password")
    assert not is_unauthorized("manifest unknown")


def test_progress_object_becomes_a_typed_event() -> None:
    """Layer, status and byte counts are read from the engine's object."""
    raw = (
        '{"status":"Downloading","id":"393bf","progressDetail":{"current":5,"total":9}}'
    )
    event = to_event(
        "img:1",
        {
            "status": "Downloading",
            "id": "393bf",
            "progressDetail": {"current": 5, "total": 9},
        },
        raw,
    )
    assert (event.image, event.layer, event.status, event.current, event.total) == (
        "img:1",
        "393bf",
        "Downloading",
        5,
        9,
    )
    assert event.raw_line == raw


def test_event_without_details_has_no_counts() -> None:
    """Status-only objects give None for layer and byte counts."""
    event = to_event("img:1", {"status": "Digest: sha256:x", "progressDetail": {}}, "")
    assert (event.layer, event.current, event.total) == (None, None, None)
