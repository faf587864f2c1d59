"""Keep driver containers alive without letting a bad one thrash the host.

The supervisor watches the driver containers of linked twins from one loop
cycle to the next and decides four things (protocol.md 4.11, 7b item 23):

- which drivers restart too often and must be parked (stopped for a
  cool-off that doubles with every further loop, up to a cap);
- which parked drivers are released: their spec changed, they ran long
  enough after their retry, or a person asked for a restart;
- which drivers went down or came back, for the ``driver_health`` alert;
- which desired containers must not be launched in the next pass: parked
  ones, ones revived too recently, ones removed by hand (until the revival
  delay passes) and ones whose launch keeps failing (with backoff).

It is pure bookkeeping over plain observations: it never talks to Docker
or the cloud, starts no thread and reads time only through the injected
clocks. Acting on its verdict (``docker update --restart=no``, stopping,
alerts) is the caller's job. Containers of twins that are no longer linked
(orphans) are never looked at.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from edge_core.config.settings import Settings
from edge_core.drivers.verdict import (
    DOWN_STATES,
    REMOVED,
    REMOVING,
    CameBack,
    Cleared,
    Desired,
    FlapInfo,
    Observation,
    Park,
    Verdict,
    WentDown,
    format_duration,
    format_seconds,
)

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Run ``method`` holding the supervisor's lock."""

    @functools.wraps(method)
    def call(self: Supervisor, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(F, call)


Clock = Callable[[], float]


# -- bookkeeping ---------------------------------------------------------


@dataclass
class _Parking:
    # None for parking restored from a previous run: the first desired
    # spec seen is the one parked.
    spec_hash: str | None
    until: float
    restarts: int
    cooloff: float
    stable_since: float | None = None


@dataclass
class _Track:
    """Everything remembered about one container name."""

    twin_uuid: str
    spec_hash: str | None = None
    container_id: str | None = None
    restart_count: int = 0
    restarts: deque[float] = field(default_factory=deque)
    state: str | None = None
    seen: bool = False
    missing_since: float | None = None
    removed_by_us: bool = False
    last_launch: float | None = None
    failures: int = 0
    error: str | None = None
    was_running: bool = False
    down: bool = False
    stopping: bool = False
    loops: int = 0
    park: _Parking | None = None

    def known(self) -> bool:
        """True once the name existed or was launched by us."""
        return self.container_id is not None or self.last_launch is not None


@dataclass
class _Events:
    park: list[Park] = field(default_factory=list)
    cleared: list[Cleared] = field(default_factory=list)
    went_down: list[WentDown] = field(default_factory=list)
    came_back: list[CameBack] = field(default_factory=list)

    def verdict(self) -> Verdict:
        return Verdict(
            park=tuple(self.park),
            cleared=tuple(self.cleared),
            went_down=tuple(self.went_down),
            came_back=tuple(self.came_back),
        )


class Supervisor:
    """Restart-loop guard, revival timing and health transitions of drivers.

    Call ``observe`` once per loop cycle, act on its verdict, launch only
    what ``hold`` (or, per container, ``hold_reason``) does not name, and
    report every launch with ``launched``. Call ``stopped_by_us`` before
    stopping or removing a driver on purpose, so that it is not reported as
    gone down. ``restore`` re-parks drivers a previous run had parked.

    Thread-safe: the loop observes while a pass on another thread asks
    ``hold_reason``; every public call holds one lock.
    """

    def __init__(
        self,
        *,
        threshold: int = 4,
        window: float = 60.0,
        cooloff: float = 600.0,
        cooloff_max: float = 3600.0,
        clear_after: float = 600.0,
        revival_debounce: float = 60.0,
        removed_revival: float = 300.0,
        launch_retry_max: float = 3600.0,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self._threshold = threshold
        self._window = window
        self._cooloff = cooloff
        self._cooloff_max = cooloff_max
        self._clear_after = clear_after
        self._revival_debounce = revival_debounce
        self._removed_revival = removed_revival
        self._launch_retry_max = launch_retry_max
        self._clock = clock
        self._wall = wall
        self._tracks: dict[str, _Track] = {}
        self._desired: dict[str, Desired] = {}
        self._observed = False
        self._lock = threading.RLock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> Supervisor:
        """A supervisor tuned by the ``CYBERWAVE_DRIVER_*`` settings."""
        return cls(
            threshold=settings.driver_restart_loop_threshold,
            window=settings.driver_restart_loop_window,
            cooloff=settings.driver_flap_cooloff,
            cooloff_max=settings.driver_flap_cooloff_max,
            clear_after=settings.driver_flap_clear,
            revival_debounce=settings.driver_revival_debounce,
            removed_revival=settings.driver_removed_revival_seconds,
            clock=clock,
            wall=wall,
        )

    # -- the cycle -------------------------------------------------------

    @_locked
    def observe(
        self,
        desired: Mapping[str, Desired],
        current: Sequence[Observation],
        *,
        skip: Set[str] = frozenset(),
    ) -> Verdict:
        """Take in one cycle's containers; return what changed.

        ``current`` may hold containers that are not desired (orphans):
        they are ignored. Desired names in ``skip`` (a pass is launching
        them right now) are not looked at this cycle.
        """
        now = self._clock()
        by_name = {observation.name: observation for observation in current}
        self._desired = dict(desired)
        self._observed = True
        events = _Events()
        for name, want in desired.items():
            if name in skip:
                continue
            track = self._tracks.setdefault(name, _Track(twin_uuid=want.twin_uuid))
            track.twin_uuid = want.twin_uuid
            seen = by_name.get(name)
            self._check_spec(name, track, want, events)
            self._count_restarts(name, track, seen, now)
            self._check_loop(name, track, want, now, events)
            self._check_health(name, track, seen, events)
            self._check_stable(name, track, seen, now, events)
            self._note_presence(track, seen, now)
        return events.verdict()

    @_locked
    def hold(self) -> dict[str, str]:
        """Desired containers not to launch in the next pass, with the reason.

        Before the first ``observe`` every remembered name counts, so that
        parking restored at start holds the first pass too.
        """
        now = self._clock()
        held: dict[str, str] = {}
        for name, track in self._tracks.items():
            if not self._wanted(name):
                continue
            reason = self._hold_reason(track, now, track.state, track.missing_since)
            if reason is not None:
                held[name] = reason
        return held

    @_locked
    def hold_reason(self, name: str, state: str | None) -> str | None:
        """Why not to launch ``name`` now, judged on its state seen just now.

        ``state`` is the engine's state of the container (None when it does
        not exist). A pass that lists the containers itself asks this per
        container, so a driver killed or removed since the last ``observe``
        is held all the same. None means: launch it.
        """
        track = self._tracks.get(name)
        if track is None:
            return None
        if state == REMOVING:
            # Launching now would race the engine's own removal.
            return "being removed; looked at again next cycle"
        now = self._clock()
        missing_since = None
        if state is None:
            missing_since = now if track.missing_since is None else track.missing_since
        reason = self._hold_reason(track, now, state, missing_since)
        seen_up = track.was_running and not track.stopping
        if reason is None and state in DOWN_STATES and seen_up:
            # Revived before the loop has seen it down, it would never get
            # its driver_health alert; the next look reports it first.
            return f"{state} since the last look; revived once that is reported"
        return reason

    @_locked
    def launched(
        self, name: str, spec_hash: str, ok: bool, *, reason: str | None = None
    ) -> None:
        """Record a launch of ``name`` by the edge core and its outcome.

        A launch of a name that existed before with the same spec is a
        restart and counts toward the restart-loop rule; a launch with a
        new spec starts the count afresh. ``reason`` says why a launch
        failed; the hold reason repeats it while the retry waits.
        """
        now = self._clock()
        track = self._track(name)
        new_spec = track.spec_hash is not None and track.spec_hash != spec_hash
        if new_spec:
            track.restarts.clear()
            track.failures = 0
        elif ok and track.known() and not self._cooling(track, now):
            track.restarts.append(now)
            log.debug("counting the relaunch of %s as a restart", name)

        track.spec_hash = spec_hash
        track.last_launch = now
        track.stopping = False
        # A launch is told once its probe saw the container run (ok) or
        # fail: going down after a good probe is a health event, before it
        # a failed start.
        track.was_running = ok
        if track.park is not None:
            track.park.stable_since = None

        if not ok:
            track.failures += 1
            track.error = reason
            # A failed launch may leave no container: that absence is ours,
            # and the launch backoff, not the removal delay, governs it.
            track.removed_by_us = True
            return
        track.failures = 0
        track.error = None
        track.seen = True
        track.missing_since = None
        track.removed_by_us = False

    @_locked
    def stopped_by_us(self, name: str) -> None:
        """Say that the edge core is about to stop or remove ``name`` itself.

        The mark lasts until the container is seen down or gone, or until
        ``launched`` reports it started again (call it after a restart too).
        """
        self._track(name).stopping = True

    @_locked
    def restore(
        self,
        name: str,
        *,
        twin_uuid: str,
        parked_until_wall: float,
        restarts: int = 0,
        loops: int = 1,
        spec_hash: str | None = None,
    ) -> None:
        """Park ``name`` again as a previous run of the edge core had it.

        Parking lives in memory; without this, restarting the edge core
        during a cool-off would start a parked driver early, and one
        restarted while it was being retried would start its next loop at
        the first again and keep its alert open. A ``parked_until_wall``
        in the past is such a retry. ``spec_hash`` is the spec parked (a
        different one releases the driver); without it the first desired
        spec seen is taken. Call it at start, before the first pass, from
        the previous state file.
        """
        now = self._clock()
        track = self._track(name)
        track.twin_uuid = twin_uuid
        track.loops = max(loops, 1)
        track.park = _Parking(
            spec_hash=spec_hash or None,
            until=now + (parked_until_wall - self._wall()),
            restarts=restarts,
            cooloff=self._cooloff,
        )

    @_locked
    def reset(self, names: Iterable[str] | None = None) -> tuple[Cleared, ...]:
        """Forget parking, restarts and launch backoff (``restart_edge_core``).

        Returns the drivers whose parking this ended.
        """
        chosen: Iterable[str] = list(self._tracks) if names is None else names
        cleared: list[Cleared] = []
        for name in chosen:
            track = self._tracks.get(name)
            if track is None:
                continue
            if track.park is not None:
                reason = "the edge core was restarted"
                cleared.append(Cleared(name, track.twin_uuid, reason))
            self._unpark(track)
            track.failures = 0
            track.error = None
        return tuple(cleared)

    @_locked
    def forget(self, names: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """Drop containers no longer desired (their twin was unlinked).

        Returns (name, twin uuid) of those that were still parked or down,
        whose alerts the caller resolves.
        """
        open_incidents: list[tuple[str, str]] = []
        for name in names:
            track = self._tracks.pop(name, None)
            self._desired.pop(name, None)
            if track is not None and (track.park is not None or track.down):
                open_incidents.append((name, track.twin_uuid))
        return tuple(open_incidents)

    @_locked
    def known(self) -> tuple[str, ...]:
        """Every container name remembered, desired now or not."""
        return tuple(self._tracks)

    @_locked
    def flapping(self) -> dict[str, FlapInfo]:
        """Every parked driver, still in its cool-off or retrying after it."""
        now, wall = self._clock(), self._wall()
        flapping: dict[str, FlapInfo] = {}
        for name, track in self._tracks.items():
            if track.park is None or not self._wanted(name):
                continue
            flapping[name] = FlapInfo(
                twin_uuid=track.twin_uuid,
                parked_until_wall=wall + (track.park.until - now),
                loops=track.loops,
                restarts=track.park.restarts,
                retrying=now >= track.park.until,
                spec_hash=track.park.spec_hash,
            )
        return flapping

    # -- the steps of observe --------------------------------------------

    def _check_spec(
        self, name: str, track: _Track, want: Desired, events: _Events
    ) -> None:
        """A parked driver whose spec changed is a new driver: release it."""
        if track.park is not None and track.park.spec_hash is None:
            track.park.spec_hash = want.spec_hash
        if track.park is None or track.park.spec_hash == want.spec_hash:
            return
        log.debug("releasing %s: its spec changed while parked", name)
        events.cleared.append(Cleared(name, track.twin_uuid, "its spec changed"))
        self._unpark(track)

    def _count_restarts(
        self, name: str, track: _Track, seen: Observation | None, now: float
    ) -> None:
        """Count Docker's restarts since the last look at this name.

        A container recreated since then (new id) had all of its restarts
        after the last look; a container first met, e.g. adopted at start,
        only sets the baseline.
        """
        if seen is None:
            return
        if seen.container_id == track.container_id:
            new = seen.restart_count - track.restart_count
        elif track.known():
            new = seen.restart_count
        else:
            new = 0
        track.container_id = seen.container_id
        track.restart_count = seen.restart_count
        if new <= 0 or self._cooling(track, now):
            return
        log.debug("%s restarted %d time(s) since the last cycle", name, new)
        track.restarts.extend([now] * new)
        if track.park is not None:
            track.park.stable_since = None

    def _check_loop(
        self, name: str, track: _Track, want: Desired, now: float, events: _Events
    ) -> None:
        """Park a driver with more than ``threshold`` restarts in the window."""
        while track.restarts and now - track.restarts[0] >= self._window:
            track.restarts.popleft()
        if self._cooling(track, now) or len(track.restarts) <= self._threshold:
            return

        track.loops += 1
        exponent = min(track.loops - 1, 32)
        cooloff = min(self._cooloff * 2.0**exponent, self._cooloff_max)
        restarts = len(track.restarts)
        track.park = _Parking(
            spec_hash=want.spec_hash,
            until=now + cooloff,
            restarts=restarts,
            cooloff=cooloff,
        )
        track.restarts.clear()
        # Parking stops the container: that is not a health event.
        track.stopping = True
        log.debug(
            "%s: %d restarts within %s exceed the threshold of %d",
            name,
            restarts,
            format_seconds(self._window),
            self._threshold,
        )
        events.park.append(
            Park(name, track.twin_uuid, restarts, self._window, cooloff, track.loops)
        )

    def _check_health(
        self, name: str, track: _Track, seen: Observation | None, events: _Events
    ) -> None:
        """Report a running driver going down, and its coming back, once."""
        if seen is not None and seen.running:
            if track.down:
                events.came_back.append(CameBack(name, track.twin_uuid))
                track.down = False
            track.was_running = True
            return

        # Restarting, paused and the like are no transition either way.
        if seen is not None and not seen.down:
            return
        if track.stopping:
            log.debug("%s is down because the edge core stopped it", name)
            track.stopping = False
            track.was_running = False
            track.removed_by_us = seen is None
            return
        if not track.was_running:
            return
        state = REMOVED if seen is None else seen.state
        exit_code = None if seen is None else seen.exit_code
        events.went_down.append(WentDown(name, track.twin_uuid, state, exit_code))
        track.down = True
        track.was_running = False

    def _check_stable(
        self,
        name: str,
        track: _Track,
        seen: Observation | None,
        now: float,
        events: _Events,
    ) -> None:
        """Release a retried driver that has run for ``clear_after`` seconds."""
        park = track.park
        if park is None or now < park.until:
            return
        if seen is None or not seen.running:
            park.stable_since = None
            return
        if park.stable_since is None:
            park.stable_since = now
        if now - park.stable_since < self._clear_after:
            return
        reason = f"it ran {format_duration(self._clear_after)} without a restart"
        log.debug("releasing %s: %s", name, reason)
        events.cleared.append(Cleared(name, track.twin_uuid, reason))
        self._unpark(track)

    def _note_presence(
        self, track: _Track, seen: Observation | None, now: float
    ) -> None:
        if seen is None:
            track.state = None
            if track.missing_since is None:
                track.missing_since = now
            return
        track.state = seen.state
        track.seen = True
        track.missing_since = None
        track.removed_by_us = False
        if seen.spec_hash:
            track.spec_hash = track.spec_hash or seen.spec_hash

    # -- hold ------------------------------------------------------------

    def _hold_reason(
        self, track: _Track, now: float, state: str | None, missing_since: float | None
    ) -> str | None:
        """Why not to launch this driver now; None to launch it.

        ``state`` is the container's state (None when absent) and
        ``missing_since`` when it was first found absent.
        """
        park = track.park
        if park is not None and now < park.until:
            return self._parked_reason(park, now)

        if track.failures and track.last_launch is not None:
            wait = track.last_launch + self._launch_backoff(track.failures) - now
            if wait > 0:
                cause = f": {track.error}" if track.error else ""
                return (
                    f"launch failed {_times(track.failures)} in a row{cause}; "
                    f"next try in {format_duration(wait)}"
                )

        if state in DOWN_STATES and track.last_launch is not None:
            wait = track.last_launch + self._revival_debounce - now
            if wait > 0:
                return (
                    f"{state} soon after its last start; revived at most once "
                    f"every {format_duration(self._revival_debounce)}, next try "
                    f"in {format_duration(wait)}"
                )

        if state is None and missing_since is not None:
            return self._removed_reason(track, now, missing_since)
        return None

    def _removed_reason(
        self, track: _Track, now: float, missing_since: float
    ) -> str | None:
        """Hold a container removed by someone else until the revival delay."""
        if not track.seen or track.removed_by_us or track.stopping:
            return None
        if self._removed_revival <= 0:
            return (
                "removed outside the edge core; not recreated because "
                "CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS is 0 or less; restart "
                "the edge core (sudo systemctl restart cyberwave-edge-core) to "
                "start it again"
            )
        wait = missing_since + self._removed_revival - now
        if wait <= 0:
            return None
        return f"removed outside the edge core; recreated in {format_duration(wait)}"

    def _parked_reason(self, park: _Parking, now: float) -> str:
        left = park.until - now
        until = time.strftime("%H:%M:%S", time.gmtime(self._wall() + left))
        window = format_seconds(self._window)
        return (
            f"restart loop: {park.restarts} restarts in {window}; "
            f"parked until {until} UTC, retry in {format_duration(left)}"
        )

    def _launch_backoff(self, failures: int) -> float:
        exponent = min(failures - 1, 32)
        return min(self._revival_debounce * 2.0**exponent, self._launch_retry_max)

    # -- helpers ---------------------------------------------------------

    def _track(self, name: str) -> _Track:
        track = self._tracks.get(name)
        if track is None:
            want = self._desired.get(name)
            track = _Track(twin_uuid=want.twin_uuid if want else "")
            self._tracks[name] = track
        return track

    def _wanted(self, name: str) -> bool:
        """Desired now; before the first observation every name counts."""
        return not self._observed or name in self._desired

    def _cooling(self, track: _Track, now: float) -> bool:
        return track.park is not None and now < track.park.until

    @staticmethod
    def _unpark(track: _Track) -> None:
        track.park = None
        track.loops = 0
        track.restarts.clear()


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
