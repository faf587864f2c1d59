"""The twin files on disk and what the edge core knows about each.

``TwinStore`` keeps, per twin, the baseline checksum (persisted in
``desired-state.json``), the document it stands for, the last good copy,
the inode a driver mounted and the state of a repair. It reads a twin
file only when it is a regular file (a symlink, FIFO or device at the
path is replaced, its target never touched), writes new files and
rewrites existing ones in place, repairs a file damaged twice in a row
after keeping its bytes, and notices a file replaced or deleted on the
host so the driver holding the old inode can be restarted.

It knows nothing of the backend (``sync.TwinSync`` pushes and pulls) and
is not thread-safe: its one user holds a lock around every call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_core.config.files import (
    NotRegularFile,
    atomic_write_bytes,
    read_regular,
    rewrite_in_place,
)
from edge_core.logsetup import ProblemLog
from edge_core.model.twins import is_uuid
from edge_core.twins import desired_state
from edge_core.twins.backups import BACKUPS_KEPT, keep_backup
from edge_core.twins.files import (
    TWIN_FILE_MODE,
    TwinFile,
    encode,
    parse_document,
    read_twin_file,
    sha256,
    special_kind,
    still_holds,
)

log = logging.getLogger(__name__)

BASE_DIR = Path("run") / "twin-base"
"""Copies of the baseline content of each twin file, under the config dir."""


@dataclass
class _Tracked:
    """What is remembered about one twin's file besides its baseline."""

    base_doc: dict[str, Any] | None = None
    """The document of the baseline content, when this process knows it."""
    last_good: bytes | None = None
    inode: int | None = None
    damaged: str | None = None
    """Digest of damaged content seen once; repaired when seen again."""
    damaged_since: float = 0.0
    refused: str | None = None
    """Digest of content the backend refused (a 4xx)."""
    refusals: int = 0
    """How many times in a row the backend refused ``refused``."""
    refused_wait: int = 0
    """Cycles left before ``refused`` is sent again."""
    push_failed: bool = False
    remount: bool = False
    """The file was made anew while a driver held the old one."""
    asset: Mapping[str, Any] | None = None
    remote_metadata: Mapping[str, Any] | None = None


class TwinStore:
    """The twin files of one config dir and their bookkeeping.

    ``baselines`` are the persisted ones; ``wall_clock`` stamps the names
    of backups and of directories moved aside. Damaged bytes are repaired
    once seen unchanged for ``settle`` seconds (a driver may still be
    writing). ``mounted_inode`` says which inode a twin's running driver
    has mounted, when that can be known (None otherwise): it is asked once
    per twin and process, to find a file replaced while the edge core was
    stopped.
    """

    def __init__(
        self,
        config_dir: Path,
        *,
        baselines: Mapping[str, str],
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        settle: float = 0.0,
        mounted_inode: Callable[[str], int | None] | None = None,
        backups_kept: int = BACKUPS_KEPT,
    ) -> None:
        self._config_dir = config_dir
        self._wall_clock = wall_clock
        self._clock = clock
        self._settle = max(0.0, settle)
        self._mounted_inode = mounted_inode or (lambda _twin: None)
        self._backups_kept = max(1, backups_kept)
        # Only UUIDs name twin files (an older run may have saved others).
        self._baselines: dict[str, str] = {
            uuid.lower(): digest for uuid, digest in baselines.items() if is_uuid(uuid)
        }
        self._tracked: dict[str, _Tracked] = {}
        # A problem that stays (a refused push, a mistyped field, a full
        # disk) is one WARNING, then DEBUG until it is over.
        self.problem_log = ProblemLog(log)
        # Repairs of a driver's damage are said once per run of damage, but
        # are no lasting problem (status does not list them).
        self.repair_log = ProblemLog(log)
        self._version = 0
        self._saved_version = 0

    def baseline(self, twin_uuid: str) -> str | None:
        return self._baselines.get(twin_uuid)

    def base_doc(self, twin_uuid: str) -> dict[str, Any] | None:
        """The document the baseline stands for, when known.

        Kept in ``run/twin-base/`` too, so that after a restart of the edge
        core a push still carries only what the driver changed.
        """
        tracked = self.track(twin_uuid)
        baseline = self._baselines.get(twin_uuid)
        if tracked.base_doc is None and baseline is not None:
            try:
                data = read_regular(self._base_path(twin_uuid), follow=False)
            except OSError:
                return None
            if sha256(data) == baseline:
                tracked.base_doc = parse_document(data)
                tracked.last_good = tracked.last_good or data
        return tracked.base_doc

    def set_base(self, twin_uuid: str, data: bytes) -> None:
        """``data`` is now the baseline content: its digest, and a copy."""
        self.track(twin_uuid).base_doc = parse_document(data)
        self.set_baseline(twin_uuid, sha256(data))
        path = self._base_path(twin_uuid)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data, mode=TWIN_FILE_MODE)
        except OSError as exc:
            log.debug("could not keep the base copy %s: %s", path, exc)

    def _base_path(self, twin_uuid: str) -> Path:
        return self._config_dir / BASE_DIR / f"{twin_uuid}.json"

    def tracked_uuids(self) -> list[str]:
        """Every twin that has a baseline."""
        return list(self._baselines)

    # -- baselines -------------------------------------------------------

    def baselines(self) -> dict[str, str]:
        """A copy of the checksum baseline of every tracked twin file."""
        return dict(self._baselines)

    @property
    def version(self) -> int:
        """Grows by one at every change of the baselines."""
        return self._version

    @property
    def dirty(self) -> bool:
        """True when the baselines changed since they were last saved."""
        return self._version != self._saved_version

    def mark_saved(self, version: int) -> None:
        """The baselines as of ``version`` are on disk (read ``version`` first)."""
        self._saved_version = max(self._saved_version, version)

    def persist(self) -> bool:
        """Save changed baselines into ``desired-state.json``; True when saved.

        Nothing is written when they did not change or when there is no
        saved snapshot yet (the next download saves them with it).
        """
        if self._version == self._saved_version:
            return False
        path = self._config_dir / desired_state.FILE_NAME
        try:
            saved = desired_state.save_baselines(self._config_dir, self._baselines)
        except OSError as exc:
            self.problem_log.report(
                "baselines",
                "could not save twin file baselines in %s: %s; trying again next cycle",
                path,
                exc,
            )
            return False
        self.problem_log.clear("baselines", "saved twin file baselines in %s", path)
        if saved:
            self._saved_version = self._version
        return saved

    def problems(self) -> tuple[str, ...]:
        """One line per problem with a twin file that lasts right now."""
        return self.problem_log.active_messages()

    def set_baseline(self, twin_uuid: str, digest: str) -> None:
        if self._baselines.get(twin_uuid) == digest:
            return
        self._baselines[twin_uuid] = digest
        self._version += 1

    def drop_baseline(self, twin_uuid: str) -> None:
        if self._baselines.pop(twin_uuid, None) is not None:
            self._version += 1

    def track(self, twin_uuid: str) -> _Tracked:
        return self._tracked.setdefault(twin_uuid, _Tracked())

    # -- reading safely ----------------------------------------------------

    def read(
        self,
        twin_uuid: str,
        path: Path,
        *,
        fallback: Callable[[], Mapping[str, Any]],
        replaced: bool = False,
    ) -> TwinFile | None:
        """The twin file as it is, after fixing what is not a regular file.

        A symlink, FIFO or device at the path is replaced by a regular file
        (its target is never touched). With ``replaced``, a file that went
        away while a driver has it mounted is written again, and one
        replaced from outside is noticed; the twin is then marked for a
        driver restart.
        """
        kind = special_kind(path)
        if kind is not None:
            self._replace_special(twin_uuid, path, kind, fallback())
        elif replaced and self._gone_or_replaced(twin_uuid, path):
            self.track(twin_uuid).remount = True
        try:
            current = read_twin_file(path)
        except NotRegularFile:
            return None
        if current is not None:
            self._remember_inode(twin_uuid, path)
        return current

    def _gone_or_replaced(self, twin_uuid: str, path: Path) -> bool:
        """True when the file the driver mounted is no longer at ``path``.

        A deleted file is written again from its last good copy first.
        """
        tracked = self.track(twin_uuid)
        if tracked.inode is None:
            return False
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            good = tracked.last_good
            if good is None:
                return False
            log.warning(
                "twin file %s was deleted; writing it again from its last good "
                "copy and restarting its driver to mount it",
                path,
            )
            self.write_new(twin_uuid, path, good)
            return True
        except OSError:
            return False
        if inode == tracked.inode:
            return False
        log.warning(
            "twin file %s was replaced by another file (not written in place); "
            "restarting its driver to mount the new one",
            path,
        )
        return True

    def _replace_special(
        self, twin_uuid: str, path: Path, kind: str, fallback: Mapping[str, Any]
    ) -> None:
        good = self.track(twin_uuid).last_good
        data = good if good is not None else encode(fallback)
        log.warning(
            "twin file %s is a %s, not a regular file; replacing it with a "
            "regular file (anything it pointed to is left as it is)",
            path,
            kind,
        )
        path.unlink()
        self.write_new(twin_uuid, path, data)
        # A container mounts what a symlink pointed to, never the link.
        self.track(twin_uuid).remount = True

    def _remember_inode(self, twin_uuid: str, path: Path) -> None:
        try:
            inode = os.stat(path).st_ino
        except OSError:
            return
        tracked = self.track(twin_uuid)
        if tracked.inode is None:
            # First look in this process: a driver that kept running while
            # the edge core was stopped may hold a file since replaced.
            mounted = self._mounted_inode(twin_uuid)
            if mounted is not None and mounted != inode:
                log.warning(
                    "twin file %s is not the file its running driver has mounted "
                    "(it was replaced while the edge core was stopped); "
                    "restarting the driver to mount it",
                    path,
                )
                tracked.remount = True
        tracked.inode = inode

    # -- writing -----------------------------------------------------------

    def write_new(self, twin_uuid: str, path: Path, data: bytes) -> None:
        """Write a file that is not there (a new inode); raises ``OSError``.

        A driver that had the old one mounted is marked for a restart. A
        directory with something in it at the path (Docker makes an empty
        one for a missing bind-mount source) is moved aside, not deleted.
        """
        if path.is_dir() and any(path.iterdir()):
            aside = path.with_name(f"{path.name}.moved-aside-{int(self._wall_clock())}")
            path.rename(aside)
            log.warning(
                "twin file %s was a directory with files in it; moved it to %s",
                path,
                aside,
            )
        rewrite_in_place(path, data, mode=TWIN_FILE_MODE)
        tracked = self.track(twin_uuid)
        if tracked.inode is not None:
            tracked.remount = True
        self.written(twin_uuid, data)
        self._remember_inode(twin_uuid, path)

    def rewrite(
        self, twin_uuid: str, path: Path, current: TwinFile, data: bytes
    ) -> bool:
        """Replace ``current`` in place unless a driver wrote meanwhile."""
        if not still_holds(path, current.data):
            log.debug("twin file %s changed while being read; next cycle", path)
            return False
        try:
            rewrite_in_place(path, data, mode=TWIN_FILE_MODE)
        except OSError as exc:
            self.problem_log.report(
                f"write:{twin_uuid}",
                "could not write twin file %s: %s; the file keeps its content, "
                "trying again next cycle",
                path,
                exc,
            )
            return False
        self.written(twin_uuid, data)
        return True

    def written(self, twin_uuid: str, data: bytes) -> None:
        """Content the edge core wrote itself becomes the baseline."""
        self.problem_log.clear(f"write:{twin_uuid}")
        self.track(twin_uuid).last_good = data
        self.set_base(twin_uuid, data)

    # -- repair ----------------------------------------------------------

    def repair(
        self,
        twin_uuid: str,
        path: Path,
        current: TwinFile,
        *,
        fallback: Mapping[str, Any],
    ) -> bool:
        """Rewrite a file that stays damaged, keeping its bytes first.

        The first sighting of damaged bytes is only noted: a driver may be
        half way through writing. The same bytes seen again, ``settle``
        seconds or more later, are repaired. The last good copy is preferred; without
        one, ``fallback`` (the cloud's document) is written and becomes the
        baseline. A restored good copy keeps the old baseline, so a driver
        edit it holds that was never pushed is still pushed next cycle.
        """
        tracked = self.track(twin_uuid)
        if tracked.damaged != current.digest:
            tracked.damaged = current.digest
            tracked.damaged_since = self._clock()
            log.debug("twin file %s is not valid JSON; repaired if it stays so", path)
            return False
        if self._clock() - tracked.damaged_since < self._settle:
            return False

        good = tracked.last_good
        data = good if good is not None else encode(fallback)
        source = "its last good copy" if good is not None else "the backend's copy"
        try:
            backup = keep_backup(
                self._config_dir,
                twin_uuid,
                current.data,
                now=self._wall_clock(),
                kept=self._backups_kept,
            )
        except OSError as exc:
            self.problem_log.report(
                f"repair:{twin_uuid}",
                "twin file %s is not valid JSON and its content could not be kept "
                "(%s); not repairing it yet, trying again next cycle",
                path,
                exc,
            )
            return False
        if not still_holds(path, current.data):
            log.debug("twin file %s changed while being repaired; next cycle", path)
            return False
        try:
            rewrite_in_place(path, data, mode=TWIN_FILE_MODE)
        except OSError as exc:
            self.problem_log.report(
                f"repair:{twin_uuid}",
                "could not repair twin file %s: %s; its damaged content is kept in "
                "%s, trying again next cycle",
                path,
                exc,
                backup,
            )
            return False

        self.problem_log.clear(f"repair:{twin_uuid}")
        tracked.damaged = None
        if good is None:
            self.written(twin_uuid, data)
        else:
            tracked.last_good = data
        self.repair_log.report(
            f"damaged:{twin_uuid}",
            "twin file %s was not valid JSON (its driver wrote it?); repaired "
            "from %s, the damaged content is kept in %s",
            path,
            source,
            backup,
        )
        return True

    def remove(self, twin_uuid: str, path: Path) -> bool:
        try:
            path.unlink()
            log.info("removed cached twin file %s", path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove twin file %s: %s", path, exc)
            return False
        self.drop_baseline(twin_uuid)
        self._tracked.pop(twin_uuid, None)
        with contextlib.suppress(OSError):
            self._base_path(twin_uuid).unlink()
        return True

    def uuid_named_files(self) -> set[str]:
        try:
            names = [p.name for p in self._config_dir.iterdir() if p.is_file()]
        except OSError as exc:
            log.warning("cannot list %s: %s", self._config_dir, exc)
            return set()
        return {
            name[: -len(".json")].lower()
            for name in names
            if name.endswith(".json") and is_uuid(name[:-5])
        }
