"""Config directory resolution, legacy migration, layout and ownership."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_core.config.paths import (
    Owner,
    ensure_layout,
    migrate_legacy,
    repair_ownership,
    resolve_config_dir,
    target_owner,
)
from edge_core.errors import ConfigError

OTHER_UID = 4321
OTHER_GID = 4322


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs mount point."""
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount_point)],
        check=True,
        capture_output=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_override_wins_and_is_stripped(tmp_path: Path) -> None:
    """CYBERWAVE_EDGE_CONFIG_DIR, stripped, beats SUDO_USER and HOME."""
    environ = {
        "CYBERWAVE_EDGE_CONFIG_DIR": f"  {tmp_path}/cfg  ",
        "SUDO_USER": "root",
        "HOME": "/home/x",
    }
    assert resolve_config_dir(environ) == tmp_path / "cfg"


def test_blank_override_is_ignored() -> None:
    """A whitespace-only override falls through to the home directory."""
    environ = {"CYBERWAVE_EDGE_CONFIG_DIR": "   ", "HOME": "/home/alice"}
    assert resolve_config_dir(environ) == Path("/home/alice/.cyberwave")


def test_sudo_user_home_from_password_database() -> None:
    """Under sudo the invoking user's home from the password database is used."""
    nobody_home = pwd.getpwnam("nobody").pw_dir
    environ = {"SUDO_USER": "nobody", "HOME": "/root"}
    assert resolve_config_dir(environ) == Path(nobody_home) / ".cyberwave"


def test_unknown_sudo_user_falls_back_to_home() -> None:
    """A SUDO_USER missing from the password database falls back to $HOME."""
    environ = {"SUDO_USER": "no-such-user-cw", "HOME": "/home/bob"}
    assert resolve_config_dir(environ) == Path("/home/bob/.cyberwave")


def _legacy(tmp_path: Path) -> Path:
    legacy = tmp_path / "etc-cyberwave"
    legacy.mkdir()
    (legacy / "credentials.json").write_text('{"token": "cw_legacy"}')
    (legacy / "fingerprint.json").write_text('{"fingerprint": "old-123"}')
    (legacy / "environment.json").write_text('{"uuid": "e"}')
    (legacy / "notes.txt").write_text("not json")
    (legacy / "sub").mkdir()
    (legacy / "sub" / "x.json").write_text("{}")
    for item in legacy.glob("*.json"):
        item.chmod(0o640)
        os.utime(item, (1_000_000, 1_000_000))
    return legacy


def test_migrate_copies_missing_json_files_with_modes(tmp_path: Path) -> None:
    """Each legacy *.json is copied into a new target with its mtime; fingerprint 0644,
    others 0600."""
    legacy = _legacy(tmp_path)
    target = tmp_path / "home" / ".cyberwave"

    copied = migrate_legacy(target, legacy=legacy)

    names = sorted(p.name for p in copied)
    assert names == ["credentials.json", "environment.json", "fingerprint.json"]
    assert sorted(os.listdir(target)) == names
    assert (target / "credentials.json").read_text() == '{"token": "cw_legacy"}'
    assert _mode(target / "fingerprint.json") == 0o644
    assert _mode(target / "credentials.json") == 0o600
    assert _mode(target / "environment.json") == 0o600
    assert (target / "environment.json").stat().st_mtime == 1_000_000


def test_migrate_never_overwrites(tmp_path: Path) -> None:
    """A file already in the target is kept and only the missing ones are copied."""
    legacy = _legacy(tmp_path)
    target = tmp_path / "cfg"
    target.mkdir()
    (target / "credentials.json").write_text('{"token": "cw_new"}')

    copied = migrate_legacy(target, legacy=legacy)

    assert sorted(p.name for p in copied) == ["environment.json", "fingerprint.json"]
    assert (target / "credentials.json").read_text() == '{"token": "cw_new"}'


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    """A second run finds nothing missing and copies nothing."""
    legacy = _legacy(tmp_path)
    target = tmp_path / "cfg"
    migrate_legacy(target, legacy=legacy)

    assert migrate_legacy(target, legacy=legacy) == []


def test_migrate_without_legacy_directory_does_nothing(tmp_path: Path) -> None:
    """No legacy directory means no target directory is created."""
    target = tmp_path / "cfg"
    assert migrate_legacy(target, legacy=tmp_path / "absent") == []
    assert not target.exists()


def test_migrate_into_itself_does_nothing(tmp_path: Path) -> None:
    """When the target is the legacy directory nothing is copied or changed."""
    legacy = _legacy(tmp_path)
    assert migrate_legacy(legacy, legacy=legacy) == []
    assert _mode(legacy / "credentials.json") == 0o640


def test_target_owner_from_sudo_ids(tmp_path: Path) -> None:
    """As root, SUDO_UID and SUDO_GID name the owner."""
    environ = {"SUDO_UID": "1000", "SUDO_GID": "1001"}
    assert target_owner(tmp_path / "cfg", environ, euid=0) == Owner(1000, 1001)


def test_target_owner_gid_defaults_to_uid(tmp_path: Path) -> None:
    """Without SUDO_GID the group id equals the user id."""
    assert target_owner(tmp_path / "cfg", {"SUDO_UID": "1000"}, euid=0) == Owner(
        1000, 1000
    )


def test_target_owner_from_parent_directory(tmp_path: Path) -> None:
    """Without sudo ids, a non-root owner of the parent directory is used."""
    parent = tmp_path / "home"
    parent.mkdir()
    os.chown(parent, OTHER_UID, OTHER_GID)

    assert target_owner(parent / ".cyberwave", {}, euid=0) == Owner(
        OTHER_UID, OTHER_GID
    )


def test_target_owner_ignores_root_parent(tmp_path: Path) -> None:
    """A parent owned by root gives no owner to hand back to."""
    parent = tmp_path / "home"
    parent.mkdir()
    os.chown(parent, 0, 0)

    assert target_owner(parent / ".cyberwave", {"SUDO_UID": "abc"}, euid=0) is None


def test_target_owner_only_as_root(tmp_path: Path) -> None:
    """A process that is not root never changes ownership."""
    assert target_owner(tmp_path / "cfg", {"SUDO_UID": "1000"}, euid=1000) is None


def test_ensure_layout_creates_and_chowns(tmp_path: Path) -> None:
    """The config, workers and models directories are created and given to the owner."""
    config = tmp_path / "a" / ".cyberwave"
    ensure_layout(config, Owner(OTHER_UID, OTHER_GID))

    for directory in (config, config / "workers", config / "models"):
        assert directory.is_dir()
        assert (directory.stat().st_uid, directory.stat().st_gid) == (
            OTHER_UID,
            OTHER_GID,
        )


def test_ensure_layout_without_owner_keeps_existing(tmp_path: Path) -> None:
    """Existing directories and their content survive and no ownership changes."""
    config = tmp_path / "cfg"
    (config / "workers").mkdir(parents=True)
    (config / "workers" / "wf_a.py").write_text("x")

    ensure_layout(config, None)

    assert (config / "workers" / "wf_a.py").read_text() == "x"
    assert (config / "models").stat().st_uid == os.geteuid()


def test_ensure_layout_under_a_file_names_directory(tmp_path: Path) -> None:
    """A config path below a regular file raises a ConfigError naming the directory and
    the fix."""
    blocker = tmp_path / "file"
    blocker.write_text("x")

    with pytest.raises(ConfigError) as caught:
        ensure_layout(blocker / "cfg", None)

    message = str(caught.value)
    assert message.startswith(f"{blocker / 'cfg'} cannot be created (")
    assert "CYBERWAVE_EDGE_CONFIG_DIR" in message


def test_ensure_layout_on_read_only_fs(read_only_fs: Path) -> None:
    """A read-only file system raises a ConfigError that says so."""
    with pytest.raises(ConfigError, match="Read-only file system"):
        ensure_layout(read_only_fs / "cfg", None)


def test_repair_ownership_changes_only_foreign_entries(tmp_path: Path) -> None:
    """Every entry with another uid is lchowned, recursively, and the count is
    returned."""
    config = tmp_path / "cfg"
    (config / "models" / "yolo").mkdir(parents=True)
    (config / "models" / "yolo" / "w.pt").write_text("w")
    (config / "credentials.json").write_text("{}")
    owned = config / "edge.json"
    owned.write_text("{}")
    os.chown(owned, OTHER_UID, 0)

    changed = repair_ownership(config, Owner(OTHER_UID, OTHER_GID))

    assert changed == 5
    for path in (config, config / "models", config / "models" / "yolo"):
        assert path.stat().st_uid == OTHER_UID
    assert (config / "models" / "yolo" / "w.pt").stat().st_gid == OTHER_GID
    assert owned.stat().st_gid == 0


def test_repair_ownership_does_not_follow_links(tmp_path: Path) -> None:
    """A symbolic link is changed itself; the file it points to outside is not."""
    config = tmp_path / "cfg"
    config.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    (config / "link").symlink_to(outside)

    repair_ownership(config, Owner(OTHER_UID, OTHER_GID))

    assert (config / "link").lstat().st_uid == OTHER_UID
    assert outside.stat().st_uid == os.geteuid()


def test_repair_ownership_of_missing_directory_is_zero(tmp_path: Path) -> None:
    """A config directory that does not exist yet has nothing to repair."""
    assert repair_ownership(tmp_path / "absent", Owner(OTHER_UID, OTHER_GID)) == 0
