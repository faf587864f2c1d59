"""The driver log read positions kept on disk between edge core runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from edge_core.drivers.log_positions import load_positions, save_positions
from edge_core.drivers.logs import LogPosition

STAMP = datetime(2026, 12, 4, 10, 20, 30, 123456, tzinfo=UTC)


def test_positions_survive_a_save_and_a_load(tmp_path: Path) -> None:
    """What is saved is what the next process loads, timestamps exact."""
    path = tmp_path / "log-positions.json"
    positions = {
        "cyberwave-driver-1a2b3c4d": LogPosition("c" * 64, STAMP),
        "cyberwave-driver-5e6f7a8b": LogPosition("d" * 64, None),
    }

    save_positions(path, positions)

    assert load_positions(path) == positions
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_positions_without_a_container_are_not_kept(tmp_path: Path) -> None:
    """A position that names no container says nothing worth keeping."""
    path = tmp_path / "log-positions.json"
    save_positions(path, {"cyberwave-driver-1a2b3c4d": LogPosition(None, STAMP)})

    assert load_positions(path) == {}


def test_a_missing_or_damaged_file_means_no_positions(tmp_path: Path) -> None:
    """Missing, not JSON, not an object: nothing is loaded and nothing raises."""
    path = tmp_path / "log-positions.json"
    assert load_positions(path) == {}
    for text in ('{"cyberwave-driver-1a2b": ', "[1, 2]", "null"):
        path.write_text(text)
        assert load_positions(path) == {}


def test_bad_entries_are_skipped_and_good_ones_kept(tmp_path: Path) -> None:
    """An entry with a wrong type, an unparsable or naive timestamp is
    dropped; the others load."""
    path = tmp_path / "log-positions.json"
    good = {"container_id": "c" * 64, "timestamp": STAMP.isoformat()}
    path.write_text(
        json.dumps(
            {
                "good": good,
                "no-id": {"container_id": "", "timestamp": STAMP.isoformat()},
                "bad-stamp": {"container_id": "e" * 64, "timestamp": "yesterday"},
                "naive": {"container_id": "f" * 64, "timestamp": "2026-12-04T10:20:30"},
                "number": {"container_id": "a" * 64, "timestamp": 17},
                "not-an-object": "c" * 64,
            }
        )
    )

    assert load_positions(path) == {"good": LogPosition("c" * 64, STAMP)}
