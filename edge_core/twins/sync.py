"""Two-way sync of the twin JSON files that drivers read and edit.

Each linked twin whose uuid is a UUID has ``{config}/<twin_uuid>.json``,
bind-mounted read-write into its driver at ``/app/<twin_uuid>.json``
(protocol.md 3.7, 4.6). A driver may edit it; the edge core pushes those
edits to the backend, and pulls the backend's ``metadata`` into it when
someone changes it there (protocol.md 1.7, 7b items 19 and 22).

What counts as an edit is decided by checksum: the baseline of a file is
the SHA-256 of the last content the edge core wrote or pushed. A file the
edge core writes itself updates the baseline, so only edits by others are
pushed. Baselines are persisted in ``desired-state.json``, so an edit
made while the edge core was down is pushed at the first cycle; a file
with no baseline at all is a first sighting and only records one. While
the baseline's content is known, a push carries only what the edit
changed, metadata key by key onto the backend's current metadata, so an
edit made in the web UI meanwhile is not undone. A file whose push failed
stays on disk and is pushed again next cycle; content the backend refused
(a 4xx: a conflict, a twin briefly missing, a value it does not take yet)
is kept and sent again at once when it changes, else after 2, 4, 8...
cycles (at most ``REFUSED_RETRY_MAX_CYCLES``), so a refusal that passes
does not hold the edit, nor the pull of the backend's metadata, for good.

The files themselves (safe reads, in-place writes, repairs, a file
replaced on the host) are ``store.TwinStore``'s. This module neither
fetches the environment (the caller hands in the one listing of the
cycle) nor restarts drivers (it reports the twins whose driver must be).
"""

from __future__ import annotations

import copy
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from edge_core.config.files import NotRegularFile
from edge_core.errors import AuthError, BackendUnavailable, EdgeCoreError
from edge_core.model.twins import Twin, as_id, deep_merge, twin_document
from edge_core.twins.backups import BACKUPS_KEPT
from edge_core.twins.fields import changed_body
from edge_core.twins.files import (
    TwinFile,
    encode,
    read_twin_file,
    twin_path,
)
from edge_core.twins.store import TwinStore

log = logging.getLogger(__name__)

_NO_BASELINES: Mapping[str, str] = MappingProxyType({})

REFUSED_RETRY_MAX_CYCLES = 240
"""Most cycles between two sends of refused content (an hour at 15 s)."""


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
    remount: tuple[str, ...] = ()
    """Twins whose file was replaced or deleted on the host and written
    again: their driver still has the old inode and must be restarted."""
    pushed_fields: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """The fields each push sent, by twin uuid: the backend holds them
    now, though the listing of this cycle was taken before."""


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
    remount: list[str] = field(default_factory=list)
    pushed_fields: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    unreachable: bool = False

    def report(self) -> SyncReport:
        return SyncReport(
            pushed=tuple(self.pushed),
            pulled=tuple(self.pulled),
            repaired=tuple(self.repaired),
            failed=tuple(self.failed),
            recorded=tuple(self.recorded),
            remount=tuple(self.remount),
            pushed_fields=MappingProxyType(dict(self.pushed_fields)),
        )


class TwinSync:
    """The twin JSON files of one config dir, kept in step with the backend.

    Thread-safe: the daemon loop and a restart job may call it at once;
    calls run one after the other. ``baselines`` are the persisted ones
    (``Snapshot.twin_baselines``); ``clock`` times pushes and
    ``wall_clock`` stamps the names of backups. Damaged content is repaired
    once it stayed the same for ``settle`` seconds; ``mounted_inode`` tells
    the inode a twin's running driver has mounted (see ``TwinStore``).
    """

    def __init__(
        self,
        config_dir: Path,
        api: TwinApi,
        *,
        baselines: Mapping[str, str] = _NO_BASELINES,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        settle: float = 0.0,
        mounted_inode: Callable[[str], int | None] | None = None,
        backups_kept: int = BACKUPS_KEPT,
    ) -> None:
        self._config_dir = config_dir
        self._api = api
        self._clock = clock
        self._lock = threading.RLock()
        self._store = TwinStore(
            config_dir,
            baselines=baselines,
            wall_clock=wall_clock,
            clock=clock,
            settle=settle,
            mounted_inode=mounted_inode,
            backups_kept=backups_kept,
        )
        self._problems = self._store.problem_log

    # -- baselines -------------------------------------------------------

    def baselines(self) -> dict[str, str]:
        """A copy of the checksum baseline of every tracked twin file."""
        with self._lock:
            return self._store.baselines()

    @property
    def version(self) -> int:
        """Grows by one at every change of the baselines."""
        with self._lock:
            return self._store.version

    @property
    def dirty(self) -> bool:
        """True when the baselines changed since they were last saved."""
        with self._lock:
            return self._store.dirty

    def mark_saved(self, version: int) -> None:
        """The baselines as of ``version`` are on disk (read ``version`` first)."""
        with self._lock:
            self._store.mark_saved(version)

    def persist(self) -> bool:
        """Save changed baselines into ``desired-state.json``; True when saved.

        Nothing is written when they did not change or when there is no
        saved snapshot yet (the next download saves them with it).
        """
        # Held while writing, so an older set never lands after a newer one.
        with self._lock:
            return self._store.persist()

    def problems(self) -> tuple[str, ...]:
        """One line per problem with a twin file that lasts right now."""
        with self._lock:
            return self._store.problems()

    # -- writing the files for the drivers -------------------------------

    def ensure_files(
        self, linked_twins: Iterable[Twin], assets: Mapping[str, Mapping[str, Any]]
    ) -> list[str]:
        """Make every linked twin with an asset have a usable, current file.

        ``linked_twins`` are ``model.twins.Twin`` views; ``assets`` are raw
        asset objects by asset uuid. A missing file gets the full document
        (twin plus ``asset``); an unedited one gets the backend's document
        deep-merged onto it (protocol.md 3.7); one a driver edited is left
        for the sync to push; a damaged one is repaired. Returns the uuids
        whose file was written. Never raises: a twin whose file cannot be
        written is logged and its driver starts without it.
        """
        written: list[str] = []
        with self._lock:
            for twin in linked_twins:
                path = twin_path(self._config_dir, twin.uuid)
                asset = assets.get(twin.asset_uuid or "")
                if path is None or asset is None:
                    log.debug(
                        "twin %s gets no twin file (no UUID or no asset)", twin.uuid
                    )
                    continue
                self._store.track(twin.uuid).asset = asset
                try:
                    document = twin_document(twin.raw, asset)
                    if self._ensure_one(twin.uuid, path, document):
                        written.append(twin.uuid)
                except OSError as exc:
                    self._problems.report(
                        f"write:{twin.uuid}",
                        "could not write twin file %s: %s; its driver starts "
                        "without it, trying again at the next pass",
                        path,
                        exc,
                    )
        return written

    def _ensure_one(
        self, twin_uuid: str, path: Path, document: Mapping[str, Any]
    ) -> bool:
        current = self._store.read(twin_uuid, path, fallback=lambda: document)
        if current is None:
            self._store.write_new(twin_uuid, path, encode(document))
            log.info("wrote twin file %s", path)
            return True
        if current.document is None:
            return self._store.repair(twin_uuid, path, current, fallback=document)

        tracked = self._store.track(twin_uuid)
        tracked.last_good = current.data
        baseline = self._store.baseline(twin_uuid)
        if baseline is None or current.digest != baseline:
            # A first sighting or a driver's edit: the sync decides.
            log.debug("twin file %s exists; its local content is kept", path)
            return False
        merged = encode(deep_merge(current.document, document))
        if merged == current.data:
            return False
        if not self._store.rewrite(twin_uuid, path, current, merged):
            return False
        log.info("updated twin file %s from the backend", path)
        return True

    # -- the cycle -------------------------------------------------------

    def sync(
        self, listing: Iterable[Mapping[str, Any]], linked_uuids: Iterable[str]
    ) -> SyncReport:
        """Push local edits and pull backend metadata, once per loop cycle.

        ``listing`` holds the raw twin objects of the cycle's one
        ``GET /environments/{uuid}/twins`` (the first copy of a uuid
        counts); ``linked_uuids`` are the twins linked to this edge. A twin
        missing from the listing, or without a file, is left alone. Never
        raises for one twin's trouble.
        """
        by_uuid = _index(listing)
        outcome = _Outcome()
        with self._lock:
            for twin_uuid in self._push_order(linked_uuids):
                twin = by_uuid.get(twin_uuid)
                path = twin_path(self._config_dir, twin_uuid)
                if twin is None or path is None:
                    log.debug("twin %s is not in the listing; left alone", twin_uuid)
                    continue
                self._sync_one(twin_uuid, path, twin, outcome)
        return outcome.report()

    def _sync_one(
        self, twin_uuid: str, path: Path, twin: Mapping[str, Any], outcome: _Outcome
    ) -> None:
        tracked = self._store.track(twin_uuid)
        metadata = twin.get("metadata")
        tracked.remote_metadata = metadata if isinstance(metadata, dict) else None

        def fallback() -> Mapping[str, Any]:
            return self._cloud_document(twin_uuid, twin)

        try:
            current = self._store.read(
                twin_uuid, path, fallback=fallback, replaced=True
            )
        except OSError as exc:
            self._problems.report(
                f"read:{twin_uuid}",
                "cannot read twin file %s: %s; trying again next cycle",
                path,
                exc,
            )
            return
        self._problems.clear(f"read:{twin_uuid}")
        if tracked.remount:
            tracked.remount = False
            outcome.remount.append(twin_uuid)
        if current is None:
            return

        # A damaged file is repaired, never pushed.
        if current.document is None:
            if self._store.repair(twin_uuid, path, current, fallback=fallback()):
                outcome.repaired.append(twin_uuid)
            return

        tracked.last_good = current.data
        tracked.damaged = None
        baseline = self._store.baseline(twin_uuid)
        if baseline is None:
            self._store.set_base(twin_uuid, current.data)
            outcome.recorded.append(twin_uuid)
            log.debug("first sighting of twin file %s; baseline recorded", path)
            return

        # Push wins for this cycle; the next cycle pulls what the backend has.
        if current.digest != baseline:
            if tracked.refused == current.digest and tracked.refused_wait > 0:
                tracked.refused_wait -= 1
                log.debug(
                    "twin file %s: this content was refused; kept, sent again "
                    "in %d cycle(s)",
                    path,
                    tracked.refused_wait + 1,
                )
                outcome.failed.append(twin_uuid)
                return
            self._push_into(outcome, twin_uuid, path, current)
            return

        if self._pull(twin_uuid, path, current, twin):
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
            for twin_uuid in self._push_order(self._store.tracked_uuids()):
                baseline = self._store.baseline(twin_uuid)
                path = twin_path(self._config_dir, twin_uuid)
                if path is None:
                    continue
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
                self._push_into(outcome, twin_uuid, path, current)
        return PushReport(pushed=tuple(outcome.pushed), failed=tuple(outcome.failed))

    def _push_into(
        self, outcome: _Outcome, twin_uuid: str, path: Path, current: TwinFile
    ) -> None:
        """Push one changed file unless the backend already failed this cycle."""
        tracked = self._store.track(twin_uuid)
        if outcome.unreachable:
            log.debug(
                "not pushing twin %s: the backend is unreachable this cycle", twin_uuid
            )
            outcome.failed.append(twin_uuid)
            return

        result = self._push(twin_uuid, path, current, outcome)
        if result is _Push.PUSHED:
            outcome.pushed.append(twin_uuid)
        tracked.push_failed = result in (_Push.FAILED, _Push.UNREACHABLE)
        if tracked.push_failed:
            outcome.failed.append(twin_uuid)
        if result is _Push.UNREACHABLE:
            outcome.unreachable = True

    def _push_order(self, uuids: Iterable[str]) -> list[str]:
        """``uuids`` sorted, those whose last push failed at the end."""
        return sorted(set(uuids), key=lambda u: (self._store.track(u).push_failed, u))

    def _push(
        self, twin_uuid: str, path: Path, current: TwinFile, outcome: _Outcome
    ) -> _Push:
        """PUT what the edit of one file changed (protocol.md 1.7)."""
        assert current.document is not None
        tracked = self._store.track(twin_uuid)
        body = changed_body(
            current.document,
            self._store.base_doc(twin_uuid),
            tracked.remote_metadata,
        )
        for name, expected in sorted(body.wrong_types.items()):
            self._problems.report(
                f"type:{twin_uuid}:{name}",
                '%s: field "%s" must be a JSON %s; it is not pushed (the '
                "backend's value is written over it at the next pull)",
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
            (self._store.baseline(twin_uuid) or "none")[:12],
        )

        if not body.fields:
            log.debug("twin file %s has no pushable change; nothing to push", path)
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
                "the backend refused twin file %s: %s; it is kept, and sent "
                "again once its content changes, else on a later cycle (less "
                "often after each refusal)",
                path,
                exc,
            )
            again = tracked.refused == current.digest
            tracked.refusals = tracked.refusals + 1 if again else 1
            tracked.refused = current.digest
            tracked.refused_wait = min(
                REFUSED_RETRY_MAX_CYCLES, 2 ** min(tracked.refusals, 16)
            )
            return _Push.FAILED

        self._pushed(twin_uuid, current)
        outcome.pushed_fields[twin_uuid] = body.fields
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
        self._store.repair_log.clear(f"damaged:{twin_uuid}")
        tracked = self._store.track(twin_uuid)
        tracked.refused = None
        tracked.refusals = 0
        tracked.refused_wait = 0
        self._store.set_base(twin_uuid, current.data)

    # -- pull ------------------------------------------------------------

    def _pull(
        self, twin_uuid: str, path: Path, current: TwinFile, twin: Mapping[str, Any]
    ) -> bool:
        """Replace the local ``metadata`` with the backend's when they differ."""
        assert current.document is not None
        remote = twin.get("metadata")
        if not isinstance(remote, dict):
            log.debug("twin %s has no metadata object in the listing", twin_uuid)
            return False
        local = current.document.get("metadata")
        if local == remote:
            return False

        document = dict(current.document)
        document["metadata"] = copy.deepcopy(remote)
        if not self._store.rewrite(twin_uuid, path, current, encode(document)):
            return False
        log.info("pulled metadata of twin %s into %s", twin_uuid, path)
        log.debug(
            "twin %s metadata keys that differ: %s",
            twin_uuid,
            ", ".join(_changed_keys(local, remote)) or "(type)",
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
            candidates = set(self._store.tracked_uuids())
            candidates |= self._store.uuid_named_files()
            for twin_uuid in sorted(candidates | set(keep)):
                path = twin_path(self._config_dir, twin_uuid)
                if path is None:
                    continue
                reason = self._keep_reason(twin_uuid, path, keep)
                if reason is not None:
                    log.info("keeping twin file %s: %s", path, reason)
                    continue
                if self._store.remove(twin_uuid, path):
                    removed.append(twin_uuid)
        return removed

    def _keep_reason(self, twin_uuid: str, path: Path, keep: Set[str]) -> str | None:
        """Why a file must survive a restart, or None when it may go."""
        pushed_later = "its edit is not pushed yet; it is pushed on a later cycle"
        baseline = self._store.baseline(twin_uuid)
        if baseline is None:
            return pushed_later if twin_uuid in keep else None
        try:
            current = read_twin_file(path)
        except NotRegularFile:
            return None
        except OSError as exc:
            return f"it cannot be read ({exc})"
        if current is not None and current.document is None:
            return "it is not valid JSON; it is repaired on a later cycle"
        if twin_uuid in keep:
            return pushed_later
        if current is None or current.digest == baseline:
            return None
        return pushed_later

    def _cloud_document(
        self, twin_uuid: str, twin: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The listing's twin plus its asset when one is known."""
        asset = self._store.track(twin_uuid).asset
        if asset is None:
            return copy.deepcopy(dict(twin))
        return twin_document(twin, asset)


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
