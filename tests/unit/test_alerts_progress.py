"""Pull events folded into the pull keys of a driver_starting card (1.8)."""

from __future__ import annotations

import pytest

from edge_core.alerts.progress import PullProgress, human_bytes

PULL_KEYS = {
    "image",
    "phase",
    "progress_percent",
    "downloaded_bytes",
    "total_bytes",
    "downloaded_human",
    "total_human",
    "total_bytes_partial",
    "layers_fetched",
    "layers_total",
    "layers_complete",
    "layers_active",
    "last_docker_pull_line",
}
MB = 1_000_000


def engine_pull(progress: PullProgress) -> list[dict[str, object]]:
    """Feed a realistic two-layer pull, keeping the keys after each event."""
    events: list[tuple[str | None, str, int | None, int | None]] = [
        ("1", "Pulling from cyberwaveos/so101-driver", None, None),
        ("aaa111", "Pulling fs layer", None, None),
        ("bbb222", "Pulling fs layer", None, None),
        ("bbb222", "Waiting", None, None),
        ("aaa111", "Downloading", 3 * MB, 30 * MB),
        ("bbb222", "Downloading", 1 * MB, 10 * MB),
        ("aaa111", "Downloading", 15 * MB, 30 * MB),
        ("bbb222", "Verifying Checksum", None, None),
        ("bbb222", "Download complete", None, None),
        ("aaa111", "Downloading", 30 * MB, 30 * MB),
        ("aaa111", "Download complete", None, None),
        ("aaa111", "Extracting", 10 * MB, 30 * MB),
        ("aaa111", "Pull complete", None, None),
        ("bbb222", "Extracting", 5 * MB, 10 * MB),
        ("bbb222", "Pull complete", None, None),
        (None, "Digest: sha256:0123", None, None),
        (
            None,
            "Status: Downloaded newer image for cyberwaveos/so101-driver:1",
            None,
            None,
        ),
    ]
    seen = []
    for layer, status, current, total in events:
        progress.feed(layer, status, current, total)
        seen.append(progress.keys())
    return seen


def test_keys_are_the_pull_progress_keys_of_1_8() -> None:
    """Every snapshot carries the documented pull-progress keys."""
    progress = PullProgress("reg/img:1")
    assert set(progress.keys()) == PULL_KEYS
    assert progress.keys()["phase"] == "pull_started"
    assert progress.keys()["progress_percent"] == 0


def test_a_two_layer_pull_moves_from_downloading_to_installing() -> None:
    """Phases and numbers follow the events; 100 % only once complete."""
    progress = PullProgress("cyberwaveos/so101-driver:1")
    seen = engine_pull(progress)

    # The tag line is not a layer.
    assert seen[0]["layers_total"] == 0
    assert seen[0]["last_message"] == "Pulling from cyberwaveos/so101-driver"
    both_downloading = seen[5]
    assert both_downloading["phase"] == "downloading"
    assert both_downloading["downloaded_bytes"] == 4 * MB
    assert both_downloading["total_bytes"] == 40 * MB
    assert both_downloading["total_human"] == "40 MB"
    assert both_downloading["downloaded_human"] == "4.0 MB"
    assert both_downloading["total_bytes_partial"] is False
    assert both_downloading["layers_active"] == 2
    assert both_downloading["layers_fetched"] == 0.2
    mid = seen[7]
    assert mid["layers_fetched"] == 1.5
    assert seen[11]["phase"] == "installing"
    assert seen[11]["layers_active"] == 1
    assert seen[12]["layers_complete"] == 1
    percents = [keys["progress_percent"] for keys in seen]
    assert percents == sorted(percents), "progress never goes back"
    assert max(percents) <= 99
    assert seen[-1]["layers_complete"] == 2
    assert seen[-1]["downloaded_bytes"] == seen[-1]["total_bytes"] == 40 * MB

    progress.complete()
    final = progress.keys()
    assert (final["phase"], final["progress_percent"]) == ("pull_complete", 100)


def test_sizes_are_partial_until_every_layer_has_one() -> None:
    """A layer without a size yet makes the total partial and hides total_human."""
    progress = PullProgress("img:1")
    progress.feed("aaa", "Pulling fs layer", None, None)
    progress.feed("bbb", "Pulling fs layer", None, None)
    progress.feed("aaa", "Downloading", 745 * MB, 800 * MB)
    keys = progress.keys()
    assert keys["total_bytes_partial"] is True
    assert keys["total_human"] is None
    assert keys["downloaded_human"] == "745 MB"
    assert keys["total_bytes"] == 800 * MB
    assert 0 < keys["progress_percent"] < 99


def test_layers_already_present_count_as_complete() -> None:
    """ "Already exists" layers are complete and download nothing."""
    progress = PullProgress("img:1")
    progress.feed("aaa", "Already exists", None, None)
    progress.feed("bbb", "Pulling fs layer", None, None)
    keys = progress.keys()
    assert (keys["layers_total"], keys["layers_complete"]) == (2, 1)
    assert keys["layers_fetched"] == 1.0
    assert keys["downloaded_human"] is None
    assert keys["phase"] == "downloading"


def test_last_line_is_readable_and_short() -> None:
    """The last line reads like docker pull and never exceeds 500 chars."""
    progress = PullProgress("img:1")
    progress.feed("aaa", "Downloading", 1500, 2 * MB)
    assert progress.keys()["last_docker_pull_line"] == "aaa: Downloading 1.5 kB/2.0 MB"
    progress.feed(None, "x" * 2000)
    assert len(progress.keys()["last_docker_pull_line"]) == 500


def test_an_error_is_kept_as_last_error() -> None:
    """A failed pull leaves its reason in last_error."""
    progress = PullProgress("img:1")
    progress.error("manifest unknown")
    assert progress.keys()["last_error"] == "manifest unknown"


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1500, "1.5 kB"),
        (745 * MB, "745 MB"),
        (2**31, "2.1 GB"),
    ],
)
def test_human_sizes(size: int, text: str) -> None:
    """Sizes use decimal units, one decimal below ten."""
    assert human_bytes(size) == text
