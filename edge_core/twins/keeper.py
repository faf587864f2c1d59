"""The desired state: environment.json, its downloads and their snapshot.

The keeper reads ``environment.json`` again every cycle, downloads the
selected environment on a helper thread at most once per cycle (so a
backend that hangs never holds up the loop), runs the twin-file sync with
the same listing, and keeps the last download as the desired state. Every
download that changes it, and the first of the process, is saved to
``desired-state.json``; a save that failed (a full disk) is tried again
at each download, and meanwhile the previous file stays as it was. Before
the first download, and while the backend is away, the saved state of the
same environment stands in.

It does not decide what a failed download means for the edge (backend
away, token rejected); the daemon does, from what ``collect`` returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_core.config.environment import EnvironmentConfig, load_environment
from edge_core.errors import BackendUnavailable, ConfigError, EdgeCoreError
from edge_core.logsetup import ProblemLog, format_exception_line
from edge_core.model.linkage import linked_twins
from edge_core.twins import desired_state
from edge_core.twins.desired_state import Snapshot
from edge_core.twins.download import EnvironmentApi, download_environment
from edge_core.twins.sync import TwinSync

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Download:
    """One finished download of the environment and its twin-file sync."""

    environment_uuid: str
    snapshot: Snapshot
    complete: bool
    """False when an asset could not be fetched; the next download is full."""
    remount: tuple[str, ...] = ()
    """Twins whose driver must be restarted to see its twin file again."""


@dataclass(frozen=True)
class Collected:
    """What a finished download did to the desired state.

    ``error`` is set when it failed (the desired state is unchanged);
    ``changed`` when the desired state is new, ``fresh`` when it is the
    first full download of this process.
    """

    error: EdgeCoreError | None = None
    changed: bool = False
    fresh: bool = False
    remount: tuple[str, ...] = ()


class DesiredStateKeeper:
    """Owns the selected environment and the desired state downloaded for it.

    ``saved`` is the desired state found on disk at start (``twin_sync``
    was seeded with its baselines); ``wake`` is called when a download
    ends, so the loop collects it at once.
    """

    def __init__(
        self,
        config_dir: Path,
        api: EnvironmentApi,
        twin_sync: TwinSync,
        *,
        saved: Snapshot | None,
        fingerprint: str,
        interval: float,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config_dir = config_dir
        self._api = api
        self._twin_sync = twin_sync
        self._fingerprint = fingerprint
        self._interval = interval
        self._wake = wake
        self._clock = clock
        self._fetches = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch")
        self._problems = ProblemLog(log)
        self._notes = ProblemLog(log, level=logging.INFO)
        self.environment: EnvironmentConfig | None = None
        self.environment_error: str | None = None
        self.snapshot: Snapshot | None = None
        self._saved_ok = True
        self._saved = saved
        self._future: Future[Download] | None = None
        self._due = 0.0
        self._downloaded_once = False

    @property
    def due(self) -> float:
        """When the next download may start (monotonic)."""
        return self._due

    @property
    def current(self) -> bool:
        """True when the desired state is of the selected environment."""
        snapshot, environment = self.snapshot, self.environment
        if snapshot is None:
            return False
        return environment is None or snapshot.environment_uuid == environment.uuid

    def environment_of(self, twin_uuid: str) -> str | None:
        """The environment uuid the desired state's listing gives a twin."""
        snapshot = self.snapshot
        for twin in snapshot.twins if snapshot else ():
            if twin.get("uuid") == twin_uuid:
                value = twin.get("environment_uuid")
                return value if isinstance(value, str) else None
        return None

    # -- environment.json ------------------------------------------------

    def reload_environment(self) -> EnvironmentConfig | None:
        """Read environment.json again; one line when it breaks or heals."""
        try:
            environment = load_environment(self._config_dir)
        except ConfigError as exc:
            if str(exc) != self.environment_error:
                log.warning("%s (read again every %.0f s)", exc, self._interval)
            self.environment_error = str(exc)
            self.environment = None
            return None
        if self.environment_error is not None:
            log.info("%s is usable again", environment.path)
        self.environment_error = None
        self.environment = environment
        return environment

    def use_saved(self) -> bool:
        """Stand in the saved desired state; True when it now is the desired one.

        Only before anything else was adopted, and only when it is of the
        environment environment.json selects.
        """
        if self.snapshot is not None:
            return False
        environment = self.reload_environment()
        saved = self._saved
        if environment is None or saved is None:
            return False
        if saved.environment_uuid != environment.uuid:
            self._notes.report(
                "other-environment",
                "persisted desired state is for environment %s, not %s; "
                "waiting for the backend",
                saved.environment_uuid,
                environment.uuid,
            )
            return False
        log.info(
            "starting drivers from the desired state saved at %s",
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(saved.fetched_at)),
        )
        self.snapshot = saved
        return True

    # -- downloads -------------------------------------------------------

    def download(self, environment: EnvironmentConfig, *, refetch: bool) -> Download:
        """One download plus the twin-file sync, on the caller's thread."""
        previous = self.snapshot.assets if self.snapshot else {}
        snapshot, complete = download_environment(
            self._api,
            environment.uuid,
            self._fingerprint,
            previous,
            refetch=refetch,
        )
        # The linked copy of a uuid listed twice is the one synced, as the
        # driver pass uses it.
        linked = linked_twins(snapshot.twins, self._fingerprint)
        report = self._twin_sync.sync([t.raw for t in linked], [t.uuid for t in linked])
        snapshot = snapshot.with_pushed(report.pushed_fields)
        return Download(environment.uuid, snapshot, complete, report.remount)

    def start_download(self) -> None:
        """Start the cycle's download on the helper thread, when one is due."""
        environment = self.environment
        if environment is None or self._future is not None:
            return
        if self._clock() < self._due:
            return
        # Assets are fetched on the first download and on restart; an idle
        # cycle costs one listing however many twins are linked.
        refetch = not self._downloaded_once
        self._due = self._clock() + self._interval
        future = self._fetches.submit(self.download, environment, refetch=refetch)
        future.add_done_callback(lambda _f: self._wake())
        self._future = future

    def collect(self) -> Collected | None:
        """Take a finished download into the desired state; None while none."""
        future = self._future
        if future is None or not future.done():
            return None
        self._future = None
        try:
            download = future.result()
        except EdgeCoreError as exc:
            return Collected(error=exc)
        environment = self.environment
        if environment is None or download.environment_uuid != environment.uuid:
            return Collected(remount=download.remount)
        fresh = not self._downloaded_once
        changed = self.adopt(download.snapshot, fresh=fresh)
        # An incomplete first download (an asset missing) is tried in full again.
        self._downloaded_once = self._downloaded_once or download.complete
        return Collected(changed=changed, fresh=fresh, remount=download.remount)

    def adopt(self, snapshot: Snapshot, *, fresh: bool) -> bool:
        """Make ``snapshot`` the desired state; True when it changed (or ``fresh``)."""
        previous = self.snapshot
        changed = previous is None or _content(previous) != _content(snapshot)
        self.snapshot = snapshot
        if changed or fresh or not self._saved_ok:
            self._save(snapshot)
        else:
            # Pushes and pulls move the baselines between downloads.
            self._twin_sync.persist()
        return changed or fresh

    def for_restart(self, environment: EnvironmentConfig | None) -> Snapshot:
        """What a restart starts: a fresh download, else the known desired
        state of the same environment; raises when there is neither."""
        current = self.snapshot
        if environment is None:
            if current is None:
                raise EdgeCoreError(
                    f"{self.environment_error}; no desired state "
                    "is known to restart drivers from"
                )
            log.warning(
                "environment.json is unusable; restarting the drivers of the "
                "desired state downloaded last for environment %s",
                current.environment_uuid,
            )
            return current
        try:
            return self.download(environment, refetch=True).snapshot
        except BackendUnavailable as exc:
            if current is None or current.environment_uuid != environment.uuid:
                raise EdgeCoreError(
                    f"could not download environment {environment.uuid} ({exc}) "
                    "and no desired state of it is saved"
                ) from exc
            log.warning(
                "could not download the environment during the restart (%s); "
                "restarting the drivers of the saved desired state",
                exc,
            )
            return current

    def _save(self, snapshot: Snapshot) -> None:
        path = self._config_dir / desired_state.FILE_NAME
        version = self._twin_sync.version
        try:
            desired_state.save(
                self._config_dir, snapshot.with_baselines(self._twin_sync.baselines())
            )
        except OSError as exc:
            self._saved_ok = False
            self._problems.report(
                "save",
                "could not save %s: %s; the previous copy is kept, trying again "
                "at the next download",
                path,
                format_exception_line(exc),
            )
            return
        self._saved_ok = True
        self._twin_sync.mark_saved(version)
        self._problems.clear("save", "saved %s again", path)

    def close(self) -> None:
        """Abandon a download in flight; the process does not wait for it."""
        self._fetches.shutdown(wait=False, cancel_futures=True)


RUNTIME_METADATA_KEYS = frozenset(
    {
        "status",
        "power",
        "motor_temps",
        "performance",
        "active_map_uuid",
        "active_map_type",
        "active_map_resolution",
        "finalize_active_map_request",
        "last_finalized_map_uuid",
        "last_finalized_map_name",
        "navigation_lifecycle",
        "localization",
        "speaker_device",
        "audio_routing",
        "robot_dump",
    }
)
"""Twin metadata a running robot keeps changing (protocol.md 1.7); no
driver depends on it, so a change of it alone starts no pass."""


def _content(snapshot: Snapshot) -> tuple[Any, Any]:
    """What a driver pass depends on in a snapshot.

    Not the download time, nor ``updated_at`` stamps, nor the runtime keys
    of twin metadata: a robot reporting its battery every few seconds
    would otherwise cost a pass and a save of the desired state per cycle.
    """
    twins = [_steady(twin) for twin in snapshot.twins]
    assets = {
        uuid: {k: v for k, v in asset.items() if k != "updated_at"}
        if isinstance(asset, Mapping)
        else asset
        for uuid, asset in snapshot.assets.items()
    }
    return (twins, assets)


def _steady(twin: Any) -> Any:
    if not isinstance(twin, Mapping):
        return twin
    steady = {k: v for k, v in twin.items() if k != "updated_at"}
    metadata = steady.get("metadata")
    if isinstance(metadata, Mapping):
        steady["metadata"] = {
            k: v for k, v in metadata.items() if k not in RUNTIME_METADATA_KEYS
        }
    return steady
