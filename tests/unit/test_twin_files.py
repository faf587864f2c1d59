"""Twin JSON files and the persisted desired state on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge_core.twins import desired_state
from edge_core.twins.files import read_twin_file, twin_path, write_twin_file

TWIN = {
    "uuid": "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13",
    "name": "arm",
    "metadata": {
        "edge_fingerprint": "fp",
        "drivers": {"default": {"docker_image": "x"}},
    },
}
ASSET = {"uuid": "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b", "name": "SO-101"}


def test_new_twin_file_has_asset_key_and_mode(tmp_path: Path) -> None:
    """A new twin file holds the twin plus its asset, mode 0644."""
    write_twin_file(tmp_path, TWIN, ASSET)
    path = twin_path(tmp_path, TWIN["uuid"])
    data = json.loads(path.read_text())
    assert data["asset"] == ASSET
    assert data["name"] == "arm"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert path.read_text().endswith("}\n")


def test_existing_file_is_merged_in_place(tmp_path: Path) -> None:
    """Rewriting keeps the inode (bind mount) and keys a driver added."""
    write_twin_file(tmp_path, TWIN, ASSET)
    path = twin_path(tmp_path, TWIN["uuid"])
    inode = path.stat().st_ino
    local = json.loads(path.read_text())
    local["metadata"]["calibration"] = {"offset": 3}
    local["local_only"] = True
    path.write_text(json.dumps(local))
    updated = dict(TWIN, name="left arm")
    write_twin_file(tmp_path, updated, ASSET)
    data = json.loads(path.read_text())
    assert path.stat().st_ino == inode
    assert data["name"] == "left arm"
    assert data["local_only"] is True
    assert data["metadata"]["calibration"] == {"offset": 3}


def test_corrupt_file_is_replaced(tmp_path: Path) -> None:
    """A twin file that is not JSON is rewritten from the cloud's data."""
    path = twin_path(tmp_path, TWIN["uuid"])
    path.write_text("{not json")
    write_twin_file(tmp_path, TWIN, ASSET)
    assert json.loads(path.read_text())["uuid"] == TWIN["uuid"]


def test_a_byte_order_mark_is_skipped_and_only_objects_count(tmp_path: Path) -> None:
    """JSON after a UTF-8 byte order mark is read; JSON that is no object,
    or bytes that are no UTF-8, are damage."""
    path = tmp_path / "twin.json"
    path.write_bytes(b'\xef\xbb\xbf{"name": "arm"}')
    read = read_twin_file(path)
    assert read is not None and read.document == {"name": "arm"}
    for data in (b"[]", b"null", b"1", b"", b'{"name": "caf\xe9"}', b"\xef\xbb\xbf"):
        path.write_bytes(data)
        read = read_twin_file(path)
        assert read is not None and read.document is None, data


def test_directory_left_by_docker_is_replaced(tmp_path: Path) -> None:
    """An empty directory where the file should be becomes the file."""
    path = twin_path(tmp_path, TWIN["uuid"])
    path.mkdir()
    write_twin_file(tmp_path, TWIN, ASSET)
    assert path.is_file()


def test_desired_state_round_trip_without_token(tmp_path: Path) -> None:
    """The snapshot survives a save and load, mode 0600, with no token in it."""
    snapshot = desired_state.new_snapshot(
        "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
        [TWIN],
        {ASSET["uuid"]: ASSET},
        now=12.5,
    )
    desired_state.save(tmp_path, snapshot)
    path = tmp_path / desired_state.FILE_NAME
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "cw_" not in path.read_text()
    loaded = desired_state.load(tmp_path)
    assert loaded is not None
    assert loaded.environment_uuid == snapshot.environment_uuid
    assert loaded.twins == (TWIN,)
    assert loaded.fetched_at == 12.5


def test_unusable_desired_state_is_ignored_not_deleted(tmp_path: Path) -> None:
    """A damaged snapshot is ignored and left on disk for a person to see."""
    path = tmp_path / desired_state.FILE_NAME
    path.write_text("[1, 2")
    assert desired_state.load(tmp_path) is None
    assert path.exists()
    os.remove(path)
    assert desired_state.load(tmp_path) is None
