"""Twin file baselines persisted in desired-state.json (protocol.md 7b-22)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge_core.twins import desired_state

ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
TWIN = {"uuid": "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13", "name": "arm"}
BASELINES = {TWIN["uuid"]: "ab" * 32}


def test_baselines_round_trip(tmp_path: Path) -> None:
    """Saved with the snapshot, loaded back unchanged."""
    snapshot = desired_state.new_snapshot(ENV, [TWIN], {}, baselines=BASELINES)

    desired_state.save(tmp_path, snapshot)
    loaded = desired_state.load(tmp_path)

    assert loaded is not None
    assert loaded.twin_baselines == BASELINES


def test_file_without_baselines_loads_with_none(tmp_path: Path) -> None:
    """A file written before baselines existed still loads."""
    path = tmp_path / desired_state.FILE_NAME
    path.write_text(
        json.dumps(
            {"schema": 1, "environment_uuid": ENV, "twins": [TWIN], "assets": {}}
        )
    )

    loaded = desired_state.load(tmp_path)

    assert loaded is not None
    assert loaded.twin_baselines == {}
    assert loaded.twins == (TWIN,)


def test_malformed_baselines_are_skipped(tmp_path: Path) -> None:
    """Entries that are not string to string are dropped, the rest kept."""
    snapshot = desired_state.new_snapshot(ENV, [TWIN], {})
    data = snapshot.to_json()
    data["twin_baselines"] = {"good": "00", "bad": 3}
    (tmp_path / desired_state.FILE_NAME).write_text(json.dumps(data))

    loaded = desired_state.load(tmp_path)

    assert loaded is not None
    assert loaded.twin_baselines == {"good": "00"}


def test_save_baselines_changes_only_the_baselines(tmp_path: Path) -> None:
    """The rest of the saved snapshot is kept; mode stays 0600."""
    snapshot = desired_state.new_snapshot(ENV, [TWIN], {"a1": {"uuid": "a1"}}, now=7)
    desired_state.save(tmp_path, snapshot)
    path = tmp_path / desired_state.FILE_NAME
    before = json.loads(path.read_text())

    assert desired_state.save_baselines(tmp_path, BASELINES)

    after = json.loads(path.read_text())
    assert after.pop("twin_baselines") == BASELINES
    before.pop("twin_baselines")
    assert after == before
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_save_baselines_needs_a_saved_snapshot(tmp_path: Path) -> None:
    """Without a usable file nothing is written, and a damaged one is left alone."""
    assert not desired_state.save_baselines(tmp_path, BASELINES)
    assert not (tmp_path / desired_state.FILE_NAME).exists()

    path = tmp_path / desired_state.FILE_NAME
    path.write_text("[1, 2")
    assert not desired_state.save_baselines(tmp_path, BASELINES)
    assert path.read_text() == "[1, 2"


def test_with_baselines_keeps_the_download(tmp_path: Path) -> None:
    """The daemon attaches the current baselines to a fresh download."""
    snapshot = desired_state.new_snapshot(ENV, [TWIN], {}, now=3)

    attached = snapshot.with_baselines(BASELINES)

    assert attached.twin_baselines == BASELINES
    assert attached.twins == snapshot.twins
    assert attached.fetched_at == 3
    assert snapshot.twin_baselines == {}


def test_a_symlinked_saved_state_is_never_read_or_merged_into(tmp_path: Path) -> None:
    """desired-state.json as a symlink to credentials.json is not loaded,
    and saving baselines neither writes through it nor copies the token."""
    secret = tmp_path / "credentials.json"
    secret.write_text('{"token": "cw_keep_me_private"}')
    (tmp_path / desired_state.FILE_NAME).symlink_to(secret)

    assert desired_state.load(tmp_path) is None
    assert desired_state.save_baselines(tmp_path, {"a": "b"}) is False
    assert secret.read_text() == '{"token": "cw_keep_me_private"}'


def test_a_fifo_as_saved_state_does_not_hold_up_the_start(tmp_path: Path) -> None:
    """A FIFO at desired-state.json is refused at once (no writer needed)."""
    os.mkfifo(tmp_path / desired_state.FILE_NAME)

    assert desired_state.load(tmp_path) is None
