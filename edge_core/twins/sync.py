"""Two-way sync of the twin JSON files that drivers read and edit.

Each linked twin has ``{config}/<twin_uuid>.json``, bind-mounted read-write
into its driver at ``/app/<twin_uuid>.json`` (protocol.md 3.7, 4.6). A
driver may edit it; the edge core pushes those edits to the backend, and
pulls the backend's ``metadata`` into it when someone changes it there
(protocol.md 1.7, 7b items 19 and 22).

What counts as an edit is decided by checksum: the baseline of a file is
the SHA-256 of the last content the edge core wrote or pushed. A file the
edge core writes itself updates the baseline, so only edits by others are
pushed. Baselines are persisted in ``desired-state.json``, so an edit
made while the edge core was down is pushed at the first cycle; a file
with no baseline at all is a first sighting and only records one.

Losing nothing: every rewrite is in place (same inode, so the container
sees it) and never truncates the file when the disk is full; a file that
is not valid JSON is repaired only after its bytes are kept under
``{config}/run/twin-backups/``; a file whose push failed stays on disk
and is pushed again next cycle.

This module neither fetches the environment (the caller hands in the one
listing of the cycle) nor restarts drivers when metadata changes.
"""

from __future__ import annotations

import copy
import enum
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from edge_core.config.files import rewrite_in_place
from edge_core.errors import AuthError, BackendUnavailable, EdgeCoreError
from edge_core.logsetup import ProblemLog
from edge_core.model.twins import Twin, as_id, twin_document
from edge_core.twins import desired_state
from edge_core.twins.backups import BACKUPS_KEPT, keep_backup
from edge_core.twins.fields import push_body
from edge_core.twins.files import (
    TWIN_FILE_MODE,
    TwinFile,
    encode,
    read_twin_file,
    sha256,
    still_holds,
    twin_path,
)

log = logging.getLogger(__name__)

_NO_BASELINES: Mapping[str, str] = MappingProxyType({})
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class TwinApi(Protocol):
    """The one backend call twin sync makes (R8); ``CloudClient`` has it."""

    def update_twin(
        self, twin_uuid: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SyncReport:
    """What one sync cycle did, as twin uuids."""

    pushed: tuple[str, ...] = ()
    pulled: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    """Files whose push failed; they are kept and pushed again next cycle."""
    recorded: tuple[str, ...] = ()
    """First sightings: only a baseline was recorded."""


@dataclass(frozen=True)
class PushReport:
    """What a push of every changed file did (remote restart, step 4)."""

    pushed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class _Push(enum.Enum):
    PUSHED = "pushed"
    NOTHING = "nothing to push"
    FAILED = "failed"
    UNREACHABLE = "backend unreachable"


@dataclass
class _Outcome:
    """The uuids one cycle touched, filled in as it goes."""

    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    unreachable: bool = False

    def report(self) -> SyncReport:
        return SyncReport(
            pushed=tuple(self.pushed),
            pulled=tuple(self.pulled),
            repaired=tuple(self.repaired),
            failed=tuple(self.failed),
            recorded=tuple(self.recorded),
        )


class TwinSync:
    """The twin JSON files of one config dir, kept in step with the backend.

    Thread-safe: the daemon loop and a restart job may call it at once;
    calls run one after the other. ``baselines`` are the persisted ones
    (``Snapshot.twin_baselines``); ``clock`` times pushes and
    ``wall_clock`` stamps the names of backups.
    """

    def __init__(
        self,
        config_dir: Path,
        api: TwinApi,
        *,
        baselines: Mapping[str, str] = _NO_BASELINES,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        backups_kept: int = BACKUPS_KEPT,
    ) -> None:
        self._config_dir = config_dir
        self._api = api
        self._clock = clock
        self._wall_clock = wall_clock
        self._backups_kept = max(1, backups_kept)
        self._lock = threading.RLock()
        self._baselines: dict[str, str] = dict(baselines)
        self._last_good: dict[str, bytes] = {}
        self._assets: dict[str, Mapping[str, Any]] = {}
        # Twins whose last push failed are tried last, so one twin the
        # backend keeps refusing never holds back the others' pushes.
        self._push_failed: set[str] = set()
        # The content of a file the backend refused for good (4xx), by twin:
        # it is not sent again until the driver writes something else.
        self._refused: dict[str, str] = {}
        # A problem that stays (a refused push, a mistyped field, a full
        # disk) is one WARNING, then DEBUG until it is over.
        self._problems = ProblemLog(log)
        self._version = 0
        self._saved_version = 0

    # -- baselines -------------------------------------------------------

    def baselines(self) -> dict[str, str]:
        """A copy of the checksum baseline of every tracked twin file."""
        with self._lock:
            return dict(self._baselines)

    @property
    def version(self) -> int:
        """Grows by one at every change of the baselines."""
        with self._lock:
            return self._version

    @property
    def dirty(self) -> bool:
        """True when the baselines changed since they were last saved."""
        with self._lock:
            return self._version != self._saved_version

    def mark_saved(self, version: int) -> None:
        """The baselines as of ``version`` are on disk (read ``version`` first)."""
        with self._lock:
            self._saved_version = max(self._saved_version, version)

    def persist(self) -> bool:
        """Save changed baselines into ``desired-state.json``; True when saved.

        Nothing is written when they did not change or when there is no
        saved snapshot yet (the next download saves them with it).
        """
        # Held while writing, so an older set never lands after a newer one.
        with self._lock:
            if self._version == self._saved_version:
                return False
            path = self._config_dir / desired_state.FILE_NAME
            try:
                saved = desired_state.save_baselines(self._config_dir, self._baselines)
            except OSError as exc:
                self._problems.report(
                    "baselines",
                    "could not save twin file baselines in %s: %s; trying again "
                    "next cycle",
                    path,
                    exc,
                )
                return False
            self._problems.clear("baselines", "saved twin file baselines in %s", path)
            if saved:
                self._saved_version = self._version
            return saved

    def _set_baseline(self, twin_uuid: str, digest: str) -> None:
        if self._baselines.get(twin_uuid) == digest:
            return
        self._baselines[twin_uuid] = digest
        self._version += 1

    def _drop_baseline(self, twin_uuid: str) -> None:
        if self._baselines.pop(twin_uuid, None) is not None:
            self._version += 1

    # -- writing the files for the drivers -------------------------------

    def ensure_files(
        self, linked_twins: Iterable[Twin], assets: Mapping[str, Mapping[str, Any]]
    ) -> list[str]:
        """Make sure every linked twin with an asset has a usable file.

        ``linked_twins`` are ``model.twins.Twin`` views; ``assets`` are raw
        asset objects by asset uuid. A missing file gets the full document
        (twin plus ``asset``); a valid one is left as it is, since its local
        edits belong to the sync; one that is not valid JSON is repaired.
        Returns the uuids whose file was written. Never raises: a twin whose
        file cannot be written is logged and its driver starts without it.
        """
        written: list[str] = []
        with self._lock:
            for twin in linked_twins:
                asset = assets.get(twin.asset_uuid or "")
                if asset is None:
                    log.debug("twin %s has no asset; no twin file for it", twin.uuid)
                    continue
                self._assets[twin.uuid] = asset
                try:
                    if self._ensure_one(twin.uuid, twin_document(twin.raw, asset)):
                        written.append(twin.uuid)
                except OSError as exc:
                    self._problems.report(
                        f"write:{twin.uuid}",
                        "could not write twin file %s: %s; its driver starts "
                        "without it, trying again at the next pass",
                        self._path(twin.uuid),
                        exc,
                    )
        return written

    def _ensure_one(self, twin_uuid: str, document: Mapping[str, Any]) -> bool:
        path = self._path(twin_uuid)
        current = read_twin_file(path)
        if current is None:
            data = encode(document)
            rewrite_in_place(path, data, mode=TWIN_FILE_MODE)
            self._written(twin_uuid, data)
            log.info("wrote twin file %s", path)
            return True

        if current.document is not None:
            self._last_good[twin_uuid] = current.data
            log.debug("twin file %s exists; its local edits are kept", path)
            return False

        return self._repair(twin_uuid, current, fallback=document)

    def _written(self, twin_uuid: str, data: bytes) -> None:
        """Content the edge core wrote itself becomes the baseline."""
        self._problems.clear(f"write:{twin_uuid}")
        self._last_good[twin_uuid] = data
        self._set_baseline(twin_uuid, sha256(data))

    # -- the cycle -------------------------------------------------------

    def sync(
        self, listing: Iterable[Mapping[str, Any]], linked_uuids: Iterable[str]
    ) -> SyncReport:
        """Push local edits and pull backend metadata, once per loop cycle.

        ``listing`` holds the raw twin objects of the cycle's one
        ``GET /environments/{uuid}/twins``; ``linked_uuids`` are the twins
        linked to this edge. A twin missing from the listing, or without a
        file, is left alone. Never raises for one twin's trouble.
        """
        by_uuid = _index(listing)
        outcome = _Outcome()
        with self._lock:
            for twin_uuid in self._push_order(linked_uuids):
                twin = by_uuid.get(twin_uuid)
                if twin is None:
                    log.debug("twin %s is not in the listing; left alone", twin_uuid)
                    continue
                self._sync_one(twin_uuid, twin, outcome)
        return outcome.report()

    def _sync_one(
        self, twin_uuid: str, twin: Mapping[str, Any], outcome: _Outcome
    ) -> None:
        path = self._path(twin_uuid)
        try:
            current = read_twin_file(path)
        except OSError as exc:
            log.warning(
                "cannot read twin file %s: %s; trying again next cycle", path, exc
            )
            return
        if current is None:
            return

        # A damaged file is repaired, never pushed.
        if current.document is None:
            fallback = self._cloud_document(twin_uuid, twin)
            if self._repair(twin_uuid, current, fallback=fallback):
                outcome.repaired.append(twin_uuid)
            return

        self._last_good[twin_uuid] = current.data
        baseline = self._baselines.get(twin_uuid)
        if baseline is None:
            self._set_baseline(twin_uuid, current.digest)
            outcome.recorded.append(twin_uuid)
            log.debug("first sighting of twin file %s; baseline recorded", path)
            return

        # Push wins for this cycle; the next cycle pulls what the backend has.
        if current.digest != baseline:
            if self._refused.get(twin_uuid) == current.digest:
                log.debug("twin file %s: this content was refused; kept", path)
                outcome.failed.append(twin_uuid)
                return
            self._push_into(outcome, twin_uuid, current)
            return

        if self._pull(twin_uuid, current, twin):
            outcome.pulled.append(twin_uuid)

    # -- push ------------------------------------------------------------

    def push_changed(self) -> PushReport:
        """Push every tracked file that changed since its baseline.

        Used before the cached files are removed on remote restart. A file
        that is not valid JSON is not pushed and counts as failed, so it is
        kept for the next cycle to repair.
        """
        outcome = _Outcome()
        with self._lock:
            for twin_uuid in self._push_order(self._baselines):
                baseline = self._baselines[twin_uuid]
                path = self._path(twin_uuid)
                try:
                    current = read_twin_file(path)
                except OSError as exc:
                    log.warning("cannot read twin file %s: %s", path, exc)
                    outcome.failed.append(twin_uuid)
                    continue
                if current is None or current.digest == baseline:
                    continue
                if current.document is None:
                    log.info(
                        "twin file %s is not valid JSON; not pushing it, it is kept",
                        path,
                    )
                    outcome.failed.append(twin_uuid)
                    continue
                self._push_into(outcome, twin_uuid, current)
        return PushReport(pushed=tuple(outcome.pushed), failed=tuple(outcome.failed))

    def _push_into(self, outcome: _Outcome, twin_uuid: str, current: TwinFile) -> None:
        """Push one changed file unless the backend already failed this cycle."""
        if outcome.unreachable:
            log.debug(
                "not pushing twin %s: the backend is unreachable this cycle", twin_uuid
            )
            outcome.failed.append(twin_uuid)
            return

        result = self._push(twin_uuid, current)
        if result is _Push.PUSHED:
            outcome.pushed.append(twin_uuid)
        if result in (_Push.FAILED, _Push.UNREACHABLE):
            outcome.failed.append(twin_uuid)
            self._push_failed.add(twin_uuid)
        else:
            self._push_failed.discard(twin_uuid)
        if result is _Push.UNREACHABLE:
            outcome.unreachable = True

    def _push_order(self, uuids: Iterable[str]) -> list[str]:
        """``uuids`` sorted, those whose last push failed at the end."""
        return sorted(set(uuids), key=lambda u: (u in self._push_failed, u))

    def _push(self, twin_uuid: str, current: TwinFile) -> _Push:
        """PUT the allowed fields of one changed file (protocol.md 1.7)."""
        assert current.document is not None
        path = self._path(twin_uuid)
        body = push_body(current.document)
        for name, expected in sorted(body.wrong_types.items()):
            self._problems.report(
                f"type:{twin_uuid}:{name}",
                '%s: field "%s" must be a JSON %s; it is left out of the push '
                "until the driver writes it as one",
                path,
                name,
                expected,
            )
        for name in body.fields:
            self._problems.clear(f"type:{twin_uuid}:{name}")
        log.debug(
            "twin file %s changed (checksum %s, baseline %s)",
            path,
            current.digest[:12],
            self._baselines.get(twin_uuid, "none")[:12],
        )

        if not body.fields:
            log.debug("twin file %s has no pushable field; nothing to push", path)
            self._pushed(twin_uuid, current)
            return _Push.NOTHING

        started = self._clock()
        try:
            self._api.update_twin(twin_uuid, body.fields)
        except (BackendUnavailable, AuthError) as exc:
            self._problems.report(
                f"push:{twin_uuid}",
                "could not push twin file %s: %s; it is kept and pushed again "
                "next cycle",
                path,
                exc,
            )
            return _Push.UNREACHABLE
        except EdgeCoreError as exc:
            self._problems.report(
                f"push:{twin_uuid}",
                "the backend refused twin file %s: %s; it is kept, and pushed "
                "again once its content changes",
                path,
                exc,
            )
            self._refused[twin_uuid] = current.digest
            return _Push.FAILED

        self._pushed(twin_uuid, current)
        log.info(
            "pushed twin %s: %d field(s) in %.2f s",
            twin_uuid,
            len(body.fields),
            self._clock() - started,
        )
        log.debug(
            "twin %s pushed fields: %s", twin_uuid, ", ".join(sorted(body.fields))
        )
        return _Push.PUSHED

    def _pushed(self, twin_uuid: str, current: TwinFile) -> None:
        self._problems.clear(f"push:{twin_uuid}")
        self._refused.pop(twin_uuid, None)
        self._set_baseline(twin_uuid, current.digest)

    # -- pull ------------------------------------------------------------

    def _pull(self, twin_uuid: str, current: TwinFile, twin: Mapping[str, Any]) -> bool:
        """Replace the local ``metadata`` with the backend's when they differ."""
        assert current.document is not None
        path = self._path(twin_uuid)
        remote = twin.get("metadata")
        if not isinstance(remote, dict):
            log.debug("twin %s has no metadata object in the listing", twin_uuid)
            return False
        local = current.document.get("metadata")
        if local == remote:
            return False

        document = dict(current.document)
        document["metadata"] = copy.deepcopy(remote)
        data = encode(document)
        if not still_holds(path, current.data):
            log.debug("twin file %s changed while being read; next cycle", path)
            return False
        try:
            rewrite_in_place(path, data, mode=TWIN_FILE_MODE)
        except OSError as exc:
            self._problems.report(
                f"write:{twin_uuid}",
                "could not write the backend's metadata into twin file %s: %s; "
                "the file keeps its content, trying again next cycle",
                path,
                exc,
            )
            return False

        self._written(twin_uuid, data)
        log.info("pulled metadata of twin %s into %s", twin_uuid, path)
        log.debug(
            "twin %s metadata keys that differ: %s",
            twin_uuid,
            ", ".join(_changed_keys(local, remote)) or "(type)",
        )
        return True

    # -- repair ----------------------------------------------------------

    def _repair(
        self, twin_uuid: str, current: TwinFile, *, fallback: Mapping[str, Any]
    ) -> bool:
        """Rewrite a damaged file, keeping its bytes in a backup first.

        The last good copy is preferred; without one, ``fallback`` (the
        cloud's document) is written and becomes the baseline. A restored
        good copy keeps the old baseline, so a driver edit it holds that
        was never pushed is still pushed next cycle.
        """
        path = self._path(twin_uuid)
        good = self._last_good.get(twin_uuid)
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
            self._problems.report(
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
            self._problems.report(
                f"repair:{twin_uuid}",
                "could not repair twin file %s: %s; its damaged content is kept in "
                "%s, trying again next cycle",
                path,
                exc,
                backup,
            )
            return False

        self._problems.clear(f"repair:{twin_uuid}")
        if good is None:
            self._written(twin_uuid, data)
        else:
            self._last_good[twin_uuid] = data
        log.info(
            "repaired twin file %s from %s; the damaged content is kept in %s",
            path,
            source,
            backup,
        )
        return True

    # -- remote restart --------------------------------------------------

    def remove_files(self, keep: Set[str] = frozenset()) -> list[str]:
        """Delete the cached twin files (remote restart, step 5).

        Removes every tracked ``<uuid>.json`` and every other UUID-named
        ``*.json`` of the config dir, except the twins in ``keep`` and the
        files that still differ from their baseline: an edit whose push
        failed (or was not tried) and a damaged file are kept and synced on
        a later cycle. The baselines of removed files are dropped. Returns
        the uuids removed.
        """
        removed: list[str] = []
        with self._lock:
            candidates = set(self._baselines) | self._uuid_named_files()
            for twin_uuid in sorted(candidates | set(keep)):
                reason = self._keep_reason(twin_uuid, keep)
                if reason is not None:
                    log.info("keeping twin file %s: %s", self._path(twin_uuid), reason)
                    continue
                if self._remove(twin_uuid):
                    removed.append(twin_uuid)
        return removed

    def _keep_reason(self, twin_uuid: str, keep: Set[str]) -> str | None:
        """Why a file must survive a restart, or None when it may go."""
        pushed_later = "its edit is not pushed yet; it is pushed on a later cycle"
        baseline = self._baselines.get(twin_uuid)
        if baseline is None:
            return pushed_later if twin_uuid in keep else None
        try:
            current = read_twin_file(self._path(twin_uuid))
        except OSError as exc:
            return f"it cannot be read ({exc})"
        if current is not None and current.document is None:
            return "it is not valid JSON; it is repaired on a later cycle"
        if twin_uuid in keep:
            return pushed_later
        if current is None or current.digest == baseline:
            return None
        return pushed_later

    def _remove(self, twin_uuid: str) -> bool:
        path = self._path(twin_uuid)
        try:
            path.unlink()
            log.info("removed cached twin file %s", path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove twin file %s: %s", path, exc)
            return False
        self._drop_baseline(twin_uuid)
        self._last_good.pop(twin_uuid, None)
        self._push_failed.discard(twin_uuid)
        self._refused.pop(twin_uuid, None)
        return True

    def _uuid_named_files(self) -> set[str]:
        try:
            names = [p.name for p in self._config_dir.iterdir() if p.is_file()]
        except OSError as exc:
            log.warning("cannot list %s: %s", self._config_dir, exc)
            return set()
        return {
            name[: -len(".json")]
            for name in names
            if name.endswith(".json") and _CANONICAL_UUID.fullmatch(name[:-5])
        }

    def _cloud_document(
        self, twin_uuid: str, twin: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The listing's twin plus its asset when one is known."""
        asset = self._assets.get(twin_uuid)
        if asset is None:
            return copy.deepcopy(dict(twin))
        return twin_document(twin, asset)

    def _path(self, twin_uuid: str) -> Path:
        return twin_path(self._config_dir, twin_uuid)


# -- helpers -------------------------------------------------------------------


def _index(listing: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    by_uuid: dict[str, Mapping[str, Any]] = {}
    for twin in listing:
        if not isinstance(twin, Mapping):
            continue
        twin_uuid = as_id(twin.get("uuid"))
        if twin_uuid is not None:
            by_uuid.setdefault(twin_uuid, twin)
    return by_uuid


def _changed_keys(local: object, remote: Mapping[str, Any]) -> list[str]:
    if not isinstance(local, dict):
        return sorted(remote)
    keys = set(local) | set(remote)
    return sorted(key for key in keys if local.get(key) != remote.get(key))
