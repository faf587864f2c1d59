"""Image references: Docker's tag rule and the edge's tag rewrites."""

from __future__ import annotations

import pytest

from edge_core.model.images import (
    apply_environment_tag,
    has_digest,
    has_tag,
    is_local_tag,
    jetson_variant,
    split_reference,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", ("busybox", None, None)),
        ("cyberwaveos/so101-driver:dev", ("cyberwaveos/so101-driver", "dev", None)),
        ("localhost:5000/app", ("localhost:5000/app", None, None)),
        ("localhost:5000/app:1.2", ("localhost:5000/app", "1.2", None)),
        (f"app@{DIGEST}", ("app", None, DIGEST)),
        (f"reg:5000/app:1@{DIGEST}", ("reg:5000/app", "1", DIGEST)),
    ],
)
def test_split_reference(
    ref: str, expected: tuple[str, str | None, str | None]
) -> None:
    """The tag follows the last colon with no slash after it; a digest follows @."""
    assert split_reference(ref) == expected


def test_has_tag_and_digest() -> None:
    """A registry port is not a tag, and a digest is not a tag."""
    assert has_tag("app:1")
    assert not has_tag("registry:5000/app")
    assert not has_tag(f"app@{DIGEST}")
    assert has_digest(f"app@{DIGEST}")
    assert not has_digest("app:1")


@pytest.mark.parametrize(
    ("ref", "environment", "expected"),
    [
        ("cyberwaveos/so101-driver", "dev", "cyberwaveos/so101-driver:dev"),
        ("cyberwaveos/so101-driver", "Staging", "cyberwaveos/so101-driver:staging"),
        ("registry:5000/driver", "dev", "registry:5000/driver:dev"),
        ("cyberwaveos/so101-driver:1.0", "dev", "cyberwaveos/so101-driver:1.0"),
        (f"cyberwaveos/x@{DIGEST}", "dev", f"cyberwaveos/x@{DIGEST}"),
        ("cyberwaveos/so101-driver", "production", "cyberwaveos/so101-driver"),
        ("cyberwaveos/so101-driver", "PRODUCTION", "cyberwaveos/so101-driver"),
        ("cyberwaveos/so101-driver", None, "cyberwaveos/so101-driver"),
        ("cyberwaveos/so101-driver", "  ", "cyberwaveos/so101-driver"),
    ],
)
def test_apply_environment_tag(
    ref: str, environment: str | None, expected: str
) -> None:
    """Untagged references get the lowercased non-production environment as tag."""
    assert apply_environment_tag(ref, environment) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (
            "cyberwaveos/go2-ros2-driver:humble",
            "cyberwaveos/go2-ros2-driver:jetson-humble",
        ),
        ("reg:5000/app:dev", "reg:5000/app:jetson-dev"),
        ("cyberwaveos/go2-ros2-driver:jetson-humble", None),
        ("cyberwaveos/go2-ros2-driver", None),
        (f"app:1@{DIGEST}", None),
        (f"app@{DIGEST}", None),
    ],
)
def test_jetson_variant(ref: str, expected: str | None) -> None:
    """Tagged, non-digest references get a jetson- tag unless they already have one."""
    assert jetson_variant(ref) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("cyberwaveos/camera-driver:local", True),
        ("cyberwaveos/camera-driver:local-gpu", True),
        ("cyberwaveos/camera-driver:dev-local", True),
        ("cyberwaveos/camera-driver:jetson-local", True),
        ("cyberwaveos/camera-driver:locally", False),
        ("cyberwaveos/camera-driver:dev", False),
        ("cyberwaveos/local", False),
        ("localhost:5000/app", False),
    ],
)
def test_is_local_tag(ref: str, expected: bool) -> None:
    """Tags local, local-* and *-local mark locally built images."""
    assert is_local_tag(ref) is expected
