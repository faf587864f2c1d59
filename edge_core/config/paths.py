"""Where the config directory is, who owns it, and what it must contain.

The edge core usually runs as root under systemd while the operator edits
the config directory from a normal shell, so the directory is resolved
sudo-aware and its ownership is handed back to the operator
(protocol.md 3.1). Installs that predate the per-user directory kept their
files in ``/etc/cyberwave``; those are copied over, never moved and never
overwriting (protocol.md 7b item 26).

This module does not read or validate any file's content.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_core.config.files import TEMP_PREFIX, fsync_directory
from edge_core.errors import ConfigError

if sys.platform != "win32":
    import pwd

logger = logging.getLogger(__name__)

CONFIG_DIR_ENV = "CYBERWAVE_EDGE_CONFIG_DIR"
LEGACY_DIR = Path("/etc/cyberwave")
WORKERS_DIR = "workers"
MODELS_DIR = "models"

_WORLD_READABLE = frozenset({"fingerprint.json"})


@dataclass(frozen=True)
class Owner:
    """The user and group that should own the config directory."""

    uid: int
    gid: int


def resolve_config_dir(environ: Mapping[str, str]) -> Path:
    """The config directory: the override, else the sudo user's, else ours.

    ``CYBERWAVE_EDGE_CONFIG_DIR`` (stripped, non-empty) wins; then
    ``<home of $SUDO_USER>/.cyberwave`` from the password database; then
    ``~/.cyberwave``.
    """
    override = environ.get(CONFIG_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()

    sudo_home = _sudo_user_home(environ.get("SUDO_USER", "").strip())
    if sudo_home is not None:
        return sudo_home / ".cyberwave"

    home = environ.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / ".cyberwave"


def _sudo_user_home(user: str) -> Path | None:
    if not user or sys.platform == "win32":
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return Path(entry.pw_dir) if entry.pw_dir else None


def migrate_legacy(target: Path, *, legacy: Path = LEGACY_DIR) -> list[Path]:
    """Copy ``legacy/*.json`` files that ``target`` lacks; return the copies.

    Runs only when ``legacy`` is a directory other than ``target``. Files
    keep their metadata except the mode: ``fingerprint.json`` becomes 0644
    and every other file 0600. An existing file in ``target`` is never
    overwritten. A file that cannot be copied is logged and skipped.
    """
    if not legacy.is_dir():
        return []
    if _same_directory(legacy, target):
        return []

    sources = sorted(p for p in legacy.glob("*.json") if p.is_file())
    missing = [p for p in sources if not (target / p.name).exists()]
    if not missing:
        return []

    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_create(target, exc) from None

    copied = [dest for dest in (_copy_new(src, target) for src in missing) if dest]
    if copied:
        fsync_directory(target)
    return copied


def _same_directory(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False


def _copy_new(source: Path, target: Path) -> Path | None:
    destination = target / source.name
    mode = 0o644 if source.name in _WORLD_READABLE else 0o600
    fd, temp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{source.name}.", dir=target)
    os.close(fd)
    try:
        shutil.copy2(source, temp_name)
        os.chmod(temp_name, mode)
        # A hard link fails if the destination appeared meanwhile, so a file
        # written by someone else is never replaced.
        os.link(temp_name, destination)
    except FileExistsError:
        return None
    except OSError as exc:
        logger.warning(
            "cannot copy legacy config file %s to %s: %s; copy it by hand",
            source,
            destination,
            exc,
        )
        return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    logger.info("copied legacy config file %s to %s", source, destination)
    return destination


def target_owner(
    config_dir: Path, environ: Mapping[str, str], *, euid: int | None = None
) -> Owner | None:
    """Who should own the config directory, or None to leave it alone.

    Only a root process on Linux hands ownership back: to ``SUDO_UID`` /
    ``SUDO_GID`` (the gid defaults to the uid), else to the owner of the
    config directory's parent when that owner is not root. ``euid``
    defaults to the process's effective uid.
    """
    if not sys.platform.startswith("linux"):
        return None
    effective = os.geteuid() if euid is None else euid
    if effective != 0:
        return None

    sudo_uid = _as_id(environ.get("SUDO_UID"))
    if sudo_uid is not None:
        sudo_gid = _as_id(environ.get("SUDO_GID"))
        return Owner(sudo_uid, sudo_uid if sudo_gid is None else sudo_gid)

    try:
        parent = config_dir.parent.stat()
    except OSError:
        return None
    if parent.st_uid == 0:
        return None
    return Owner(parent.st_uid, parent.st_gid)


def _as_id(value: str | None) -> int | None:
    text = (value or "").strip()
    if not text.isdigit():
        return None
    return int(text)


def ensure_layout(config_dir: Path, owner: Owner | None) -> None:
    """Create the config directory with ``workers/`` and ``models/``.

    Each of the three directories is chowned to ``owner`` when given.
    Raises ``ConfigError`` naming the directory when it cannot be created.
    """
    for directory in (config_dir, config_dir / WORKERS_DIR, config_dir / MODELS_DIR):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _cannot_create(directory, exc) from None
        if owner is not None:
            _chown(directory, owner)


def _chown(path: Path, owner: Owner) -> None:
    try:
        os.lchown(path, owner.uid, owner.gid)
    except OSError as exc:
        logger.warning(
            "cannot hand %s to uid %d: %s; run the edge core as root",
            path,
            owner.uid,
            exc,
        )


def _cannot_create(directory: Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or type(exc).__name__
    return ConfigError(
        str(directory),
        None,
        f"cannot be created ({reason})",
        f"make sure the file system is writable and has free space, or set "
        f"{CONFIG_DIR_ENV} to a writable directory",
    )


def repair_ownership(config_dir: Path, owner: Owner) -> int:
    """``lchown`` everything under ``config_dir`` not owned by ``owner.uid``.

    The walk does not follow symbolic links. Returns how many entries were
    changed; an entry that cannot be changed is logged and skipped.
    """
    changed = 0
    for entry in _walk(config_dir):
        try:
            if entry.lstat().st_uid == owner.uid:
                continue
            os.lchown(entry, owner.uid, owner.gid)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("cannot change the owner of %s: %s", entry, exc)
            continue
        changed += 1
    if changed:
        logger.info(
            "handed %d entries under %s to uid %d", changed, config_dir, owner.uid
        )
    return changed


def _walk(root: Path) -> list[Path]:
    if not root.exists():
        return []
    entries = [root]
    for directory, subdirs, files in os.walk(root, followlinks=False):
        base = Path(directory)
        entries.extend(base / name for name in subdirs)
        entries.extend(base / name for name in files)
    return entries
