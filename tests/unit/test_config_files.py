"""Atomic writes, in-place rewrites and JSON reading of config files."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_core.config.files import (
    atomic_write_bytes,
    atomic_write_json,
    read_json_file,
    rewrite_in_place,
    sweep_temp_files,
)
from edge_core.errors import ConfigError

NOBODY = 65534


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, so a large write runs out of space."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point))
    try:
        yield mount_point
    finally:
        _umount(mount_point)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_atomic_write_creates_file_with_mode(tmp_path: Path) -> None:
    """A new file gets exactly the bytes and the requested mode, and no temp file
    remains."""
    target = tmp_path / "edge.json"
    atomic_write_bytes(target, b"hello", mode=0o640)

    assert target.read_bytes() == b"hello"
    assert _mode(target) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["edge.json"]


def test_atomic_write_replaces_file_with_new_inode(tmp_path: Path) -> None:
    """An existing file is replaced by rename, so readers holding it open keep the old
    content."""
    target = tmp_path / "edge.json"
    target.write_bytes(b"old")
    with target.open("rb") as held:
        atomic_write_bytes(target, b"new", mode=0o600)
        assert held.read() == b"old"

    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600


def test_atomic_write_json_uses_indent_and_trailing_newline(tmp_path: Path) -> None:
    """JSON documents are written with indent 2, a trailing newline and mode 0644."""
    target = tmp_path / "fingerprint.json"
    atomic_write_json(target, {"fingerprint": "abc-123"})

    assert target.read_text() == '{\n  "fingerprint": "abc-123"\n}\n'
    assert _mode(target) == 0o644


def test_atomic_write_on_full_disk_keeps_old_file(tiny_fs: Path) -> None:
    """When the disk fills up the write fails with ENOSPC, the old file is intact and no
    temp file is left."""
    target = tiny_fs / "edge.json"
    target.write_bytes(b'{"old": true}\n')

    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"x" * 512 * 1024, mode=0o644)

    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b'{"old": true}\n'
    assert os.listdir(tiny_fs) == ["edge.json"]


def test_atomic_write_into_missing_directory_fails(tmp_path: Path) -> None:
    """A write into a directory that does not exist raises and creates nothing."""
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "a.json", b"{}", mode=0o644)

    assert not (tmp_path / "missing").exists()


def test_rewrite_in_place_keeps_inode_when_shrinking(tmp_path: Path) -> None:
    """A shorter document replaces the content exactly while the inode stays the
    same."""
    target = tmp_path / "twin.json"
    target.write_bytes(b'{"name": "a much longer original value"}\n')
    target.chmod(0o600)
    inode = target.stat().st_ino

    rewrite_in_place(target, b'{"name": "b"}\n')

    assert target.read_bytes() == b'{"name": "b"}\n'
    assert target.stat().st_ino == inode
    assert _mode(target) == 0o644


def test_rewrite_in_place_keeps_inode_when_growing(tmp_path: Path) -> None:
    """A longer document replaces the content exactly while the inode stays the same."""
    target = tmp_path / "twin.json"
    target.write_bytes(b"{}\n")
    inode = target.stat().st_ino
    data = json.dumps({"metadata": {"k": "v" * 1000}}).encode()

    rewrite_in_place(target, data, mode=0o600)

    assert target.read_bytes() == data
    assert target.stat().st_ino == inode
    assert _mode(target) == 0o600


def test_rewrite_in_place_is_seen_through_a_bind_mount(tmp_path: Path) -> None:
    """A file bind-mounted elsewhere shows the rewritten content, which a rename would
    not achieve."""
    source = tmp_path / "twin.json"
    source.write_bytes(b'{"version": 1, "padding": "xxxxxxxx"}\n')
    mounted = tmp_path / "mounted.json"
    mounted.write_bytes(b"")
    _mount("--bind", str(source), str(mounted))
    try:
        rewrite_in_place(source, b'{"version": 2}\n')
        assert mounted.read_bytes() == b'{"version": 2}\n'

        atomic_write_bytes(source, b'{"version": 3}\n', mode=0o644)
        assert mounted.read_bytes() == b'{"version": 2}\n'
    finally:
        _umount(mounted)


def test_rewrite_in_place_creates_missing_file(tmp_path: Path) -> None:
    """A missing file is created with the content and mode."""
    target = tmp_path / "twin.json"
    rewrite_in_place(target, b"{}\n")

    assert target.read_bytes() == b"{}\n"
    assert _mode(target) == 0o644


def test_rewrite_in_place_replaces_empty_directory(tmp_path: Path) -> None:
    """An empty directory left by Docker for a missing bind source is replaced by the
    file."""
    target = tmp_path / "twin.json"
    target.mkdir()

    rewrite_in_place(target, b'{"a": 1}\n')

    assert target.is_file()
    assert target.read_bytes() == b'{"a": 1}\n'


def test_rewrite_in_place_refuses_non_empty_directory(tmp_path: Path) -> None:
    """A directory with content is never deleted; the rewrite fails instead."""
    target = tmp_path / "twin.json"
    target.mkdir()
    (target / "keep").write_text("data")

    with pytest.raises(OSError):
        rewrite_in_place(target, b"{}\n")

    assert (target / "keep").read_text() == "data"


def test_read_json_file_returns_document(tmp_path: Path) -> None:
    """A valid JSON file is parsed into Python objects."""
    target = tmp_path / "environment.json"
    target.write_text('{"uuid": "x", "n": [1, 2]}')

    assert read_json_file(target, what="environment") == {"uuid": "x", "n": [1, 2]}


def test_read_json_file_missing_names_file_and_fix(tmp_path: Path) -> None:
    """A missing file raises a one-line ConfigError naming the file and the fix."""
    target = tmp_path / "credentials.json"
    with pytest.raises(ConfigError) as caught:
        read_json_file(target, what="credentials", fix="run the installer")

    message = str(caught.value)
    assert message == f"{target} does not exist; run the installer"
    assert "\n" not in message


def test_read_json_file_not_json_names_position(tmp_path: Path) -> None:
    """Malformed JSON raises a ConfigError naming the file and where parsing failed."""
    target = tmp_path / "environment.json"
    target.write_text('{\n  "uuid": \n}')

    with pytest.raises(ConfigError) as caught:
        read_json_file(target, what="environment")

    message = str(caught.value)
    assert message.startswith(f"{target} is not valid JSON (")
    assert "line 3 column 1" in message
    assert message.endswith("; restore the environment file")


def test_read_json_file_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 text raises a ConfigError instead of a decode error."""
    target = tmp_path / "environment.json"
    target.write_bytes(b"\xff\xfe{")

    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_json_file(target, what="environment")


def test_read_json_file_directory_is_unreadable(tmp_path: Path) -> None:
    """A directory where a file is expected raises a ConfigError naming the cause."""
    target = tmp_path / "environment.json"
    target.mkdir()

    with pytest.raises(ConfigError, match="cannot be read"):
        read_json_file(target, what="environment")


def _read_as(uid: int, path: Path) -> str:
    """The outcome of read_json_file(path) in a child process running as ``uid``."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        outcome = "unexpected"
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                read_json_file(path, what="credentials")
                outcome = "read"
            except ConfigError as exc:
                outcome = str(exc)
            os.write(writer, outcome.encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


def test_read_json_file_permission_denied_names_fix() -> None:
    """A file the process may not read raises a ConfigError saying so and how to fix
    it."""
    directory = Path(tempfile.mkdtemp(prefix="cw-perm-"))
    try:
        directory.chmod(0o755)
        target = directory / "credentials.json"
        target.write_text('{"token": "cw_secret"}')
        target.chmod(0o600)

        if os.geteuid() == 0:
            outcome = _read_as(NOBODY, target)
        else:
            target.chmod(0o000)
            try:
                read_json_file(target, what="credentials")
                outcome = "read"
            except ConfigError as exc:
                outcome = str(exc)
    finally:
        for item in directory.iterdir():
            item.unlink()
        directory.rmdir()

    assert outcome.startswith(f"{target} cannot be read (permission denied); ")
    assert "sudo" in outcome


def test_sweep_removes_only_temp_files_of_interrupted_writes(tmp_path: Path) -> None:
    """Temp files an interrupted atomic write left behind are removed; every
    other file, a temp-named directory and a temp-named symlink stay."""
    (tmp_path / ".tmp_edge.json.k3j2h1").write_text('{"uuid": ')
    (tmp_path / ".tmp_desired-state.json.a9b8").write_bytes(b"")
    (tmp_path / "edge.json").write_text("{}")
    (tmp_path / "tmp_not_ours.json").write_text("{}")
    (tmp_path / ".tmp_dir").mkdir()
    (tmp_path / ".tmp_link").symlink_to(tmp_path / "edge.json")

    removed = sweep_temp_files(tmp_path)

    assert sorted(removed) == [".tmp_desired-state.json.a9b8", ".tmp_edge.json.k3j2h1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".tmp_dir",
        ".tmp_link",
        "edge.json",
        "tmp_not_ours.json",
    ]


def test_sweep_of_a_missing_directory_removes_nothing(tmp_path: Path) -> None:
    """A directory that does not exist (no run/ yet) is no error."""
    assert sweep_temp_files(tmp_path / "run") == []


def test_a_fifo_where_a_config_file_belongs_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO at environment.json is one clear error, not a read that waits
    for a writer forever."""
    path = tmp_path / "environment.json"
    os.mkfifo(path)

    with pytest.raises(ConfigError, match="not a regular file"):
        read_json_file(path, what="environment")


def test_a_device_where_a_config_file_belongs_is_refused(tmp_path: Path) -> None:
    """A symlink to /dev/zero is refused instead of read until memory ends."""
    path = tmp_path / "environment.json"
    path.symlink_to("/dev/zero")

    with pytest.raises(ConfigError, match="not a regular file"):
        read_json_file(path, what="environment")
