"""A saved desired state whose download time is odd still loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_core.twins import desired_state

DOCUMENT = {
    "schema": 1,
    "environment_uuid": "env",
    "twins": [{"uuid": "t"}],
    "assets": {"a": {"uuid": "a"}},
}


@pytest.mark.parametrize(
    ("fetched_at", "expected"),
    [
        (None, 0.0),
        ("2026-01-02T03:04:05+00:00", 1767323045.0),
        ("2026-01-02T03:04:05", 1767323045.0),
        ("soon", 0.0),
        (1e300, 0.0),
        (-5, 0.0),
        (True, 0.0),
        ([1], 0.0),
        (1700000000, 1700000000.0),
    ],
)
def test_an_odd_fetched_at_keeps_the_drivers_of_the_file(
    tmp_path: Path, fetched_at: object, expected: float
) -> None:
    (tmp_path / desired_state.FILE_NAME).write_text(
        json.dumps({**DOCUMENT, "fetched_at": fetched_at})
    )
    snapshot = desired_state.load(tmp_path)
    assert snapshot is not None
    assert snapshot.fetched_at == expected
    assert [t["uuid"] for t in snapshot.twins] == ["t"]
