"""Topic spelling and prefix joining (protocol.md 2.4, 2.5)."""

from __future__ import annotations

import pytest

from edge_core.cloud import topics

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
EDGE = "40454cf5-f5e0-4416-a858-f7fb2a661926"


def test_production_prefix_is_empty() -> None:
    """With no prefix the topics start at cyberwave/ or edges/."""
    assert topics.edge_health("", TWIN) == f"cyberwave/twin/{TWIN}/edge_health"
    assert topics.edge_command("", EDGE) == f"edges/{EDGE}/command"


def test_prefix_is_joined_without_separator() -> None:
    """The dev prefix gives devcyberwave/... and devedges/... topics."""
    assert topics.edge_health("dev", TWIN) == f"devcyberwave/twin/{TWIN}/edge_health"
    assert topics.driverlog("dev", TWIN) == f"devcyberwave/twin/{TWIN}/driverlog"
    assert topics.edge_command("dev", EDGE) == f"devedges/{EDGE}/command"
    assert topics.twin_command("dev", TWIN) == f"devcyberwave/twin/{TWIN}/command"
    assert (
        topics.worker_health("dev", TWIN) == f"devcyberwave/twin/{TWIN}/worker_health"
    )


def test_prefix_is_used_unchanged() -> None:
    """A configured prefix keeps its case and any separator it carries."""
    assert topics.edge_command("Staging/", EDGE) == f"Staging/edges/{EDGE}/command"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "abc#"])
def test_segment_with_slash_or_wildcard_is_refused(bad: str) -> None:
    """A uuid that would change the topic structure raises ValueError."""
    with pytest.raises(ValueError, match="topic segment"):
        topics.twin_command("", bad)
