"""Acting on the supervisor's verdict between driver passes.

The supervisor decides from plain observations; this module carries its
decisions out on the real parts, once per loop cycle: a driver in a
restart loop is stopped (restart policy ``no`` first, so Docker does not
start it again) and gets its ``driver_restart_loop`` alert, a released one
has that alert resolved, a driver that went down raises ``driver_health``
and resolves it when it runs again, and every running driver's log is
followed. It then says how soon a driver pass is due. After each pass it
tells the supervisor what the pass launched and which containers are now
desired.

It does not launch anything (that is the pass's job) and never touches a
container that is not desired by a linked twin.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import replace

from edge_core.alerts.book import AlertBook
from edge_core.cloud import topics
from edge_core.drivers.logs import FollowTarget, LogForwarder
from edge_core.drivers.reconcile import PassResult
from edge_core.drivers.supervisor import Supervisor
from edge_core.drivers.verdict import (
    DOWN_STATES,
    Cleared,
    Desired,
    Park,
    format_duration,
    observations,
)
from edge_core.errors import EdgeCoreError
from edge_core.runtime.container import ContainerState, ContainerView
from edge_core.runtime.docker import DockerRuntime
from edge_core.state import DriverStatus

log = logging.getLogger(__name__)


class PassDue(enum.Enum):
    """How soon the loop should run a driver pass after a look."""

    LATER = "later"
    """Nothing to do: the pass keeps its own schedule."""
    NEXT_CYCLE = "next cycle"
    """A desired driver is held or settling; look again next cycle."""
    NOW = "now"
    """Something to revive, park or release."""


def desired_of(wanted: Mapping[str, tuple[str, str]]) -> dict[str, Desired]:
    """``Desired`` by container name, from a pass's (twin uuid, spec hash)."""
    return {
        name: Desired(twin_uuid=twin, spec_hash=spec_hash)
        for name, (twin, spec_hash) in wanted.items()
    }


class DriverGuard:
    """Carries out what the supervisor decides about the driver containers.

    ``environment_of`` gives a twin's environment uuid for its alerts;
    ``window`` and ``troubleshooting_url`` name the restart-loop rule in
    the log line of a parked driver.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        alerts: AlertBook,
        *,
        fingerprint: str,
        topic_prefix: str,
        window: float,
        troubleshooting_url: str,
        environment_of: Callable[[str], str | None],
    ) -> None:
        self._supervisor = supervisor
        self._alerts = alerts
        self._fingerprint = fingerprint
        self._prefix = topic_prefix
        self._window = window
        self._troubleshooting_url = troubleshooting_url
        self._environment_of = environment_of
        # The restart policy each parked driver had, given back on release.
        self._policies: dict[str, str] = {}
        # Twins whose file was made anew while their driver had it mounted.
        self._remounts: set[str] = set()

    def launched(self, name: str, spec_hash: str, ok: bool, reason: str | None) -> None:
        """A pass's launch of ``name`` ended (``ok``: it runs); called from
        the pass's threads as each launch ends."""
        self._supervisor.launched(name, spec_hash, ok, reason=reason)

    def record(self, result: PassResult) -> dict[str, Desired]:
        """The containers desired after a pass; those no longer desired are
        forgotten and their open alerts resolved."""
        desired = desired_of(result.desired)
        gone = self._supervisor.forget(
            [name for name in self._supervisor.known() if name not in desired]
        )
        for name, twin_uuid in gone:
            # Its twin is no longer ours: what was open about it is over.
            log.info("%s is no longer managed; its open alerts are resolved", name)
            self._alerts.resolve_active(
                twin_uuid, ["driver_restart_loop", "driver_health"]
            )
        return desired

    def look(
        self,
        runtime: DockerRuntime,
        views: Sequence[ContainerView],
        desired: Mapping[str, Desired],
        forwarder: LogForwarder | None,
        *,
        busy: Set[str] = frozenset(),
    ) -> PassDue:
        """Act on one cycle's view of the containers; how soon a pass is due.

        ``busy`` are the containers a running pass is launching: they are
        left to it this cycle.
        """
        # A driver renamed by hand is given its name back by the next pass;
        # until then it is not "removed" (and raises no alert).
        reclaim = self._renamed(views, desired) - set(busy)
        verdict = self._supervisor.observe(
            desired, observations(views), skip=reclaim | set(busy)
        )
        by_name = {view.name: view for view in views}
        for park in verdict.park:
            seen = by_name.get(park.name)
            if seen is not None and seen.restart_policy not in ("", "no"):
                self._policies[park.name] = seen.restart_policy
            self._park(runtime, park)
        self.release(verdict.cleared, runtime)
        for down in verdict.went_down:
            log.warning("driver container %s stopped: %s", down.name, down.detail)
            self._alerts.raise_alert(
                alert_type="driver_health",
                twin_uuid=down.twin_uuid,
                environment_uuid=self._environment_of(down.twin_uuid),
                description=f"Driver container {down.name} stopped: {down.detail}",
            )
        for name, twin_uuid in verdict.came_back:
            log.info("driver container %s is running again", name)
            self._alerts.resolve_active(twin_uuid, ["driver_health"])
        if forwarder is not None:
            self._follow_running(forwarder, views, desired)

        if verdict.park or verdict.cleared or reclaim:
            return PassDue.NOW
        if self._to_revive(views, desired, busy):
            return PassDue.NOW
        settled = {
            view.name
            for view in views
            if view.running or view.state is ContainerState.PAUSED
        }
        if any(name not in settled and name not in busy for name in desired):
            # A held or settling driver; passes back to back while a hold
            # lasts would only spin.
            return PassDue.NEXT_CYCLE
        return PassDue.LATER

    def release(
        self, cleared: Iterable[Cleared], runtime: DockerRuntime | None = None
    ) -> None:
        """Drivers whose parking ended: their restart-loop alert is resolved
        and, with ``runtime``, the restart policy parking took is given back
        (a driver a person started by hand would otherwise keep ``no``)."""
        for name, twin_uuid, reason in cleared:
            log.info("%s is no longer parked: %s", name, reason)
            self._alerts.resolve_active(twin_uuid, ["driver_restart_loop"])
            policy = self._policies.pop(name, "unless-stopped")
            if runtime is None:
                continue
            try:
                if runtime.inspect(name, fingerprint=self._fingerprint) is not None:
                    runtime.update_restart_policy(
                        name, policy, fingerprint=self._fingerprint
                    )
            except EdgeCoreError as exc:
                log.warning("could not give %s its restart policy back: %s", name, exc)

    @staticmethod
    def _renamed(
        views: Sequence[ContainerView], desired: Mapping[str, Desired]
    ) -> set[str]:
        """Desired names whose twin's container runs under another name."""
        names = {view.name for view in views}
        others = {
            view.twin_uuid
            for view in views
            if view.name not in desired and view.twin_uuid
        }
        return {
            name
            for name, wanted in desired.items()
            if name not in names and wanted.twin_uuid in others
        }

    def _to_revive(
        self,
        views: Sequence[ContainerView],
        desired: Mapping[str, Desired],
        busy: Set[str],
    ) -> bool:
        """True when a desired driver is down or gone and nothing holds it."""
        states = {view.name: view.state.value for view in views}
        held = self._supervisor.hold()
        for name in desired:
            if name in busy:
                continue
            state = states.get(name)
            if name not in held and (state is None or state in DOWN_STATES):
                return True
        return False

    def _park(self, runtime: DockerRuntime, park: Park) -> None:
        log.warning(
            "driver %s restarted %d times within %.0f s; stopped for %s "
            "(restart loop %d); fix the driver or its device, see %s",
            park.name,
            park.restarts,
            self._window,
            format_duration(park.cooloff),
            park.loop,
            self._troubleshooting_url,
        )
        self._supervisor.stopped_by_us(park.name)
        fingerprint = self._fingerprint
        try:
            runtime.update_restart_policy(park.name, "no", fingerprint=fingerprint)
            runtime.stop(park.name, fingerprint=fingerprint)
        except EdgeCoreError as exc:
            log.warning("could not stop flapping driver %s: %s", park.name, exc)
        self._alerts.raise_alert(
            alert_type="driver_restart_loop",
            twin_uuid=park.twin_uuid,
            environment_uuid=self._environment_of(park.twin_uuid),
            metadata={
                "container_name": park.name,
                "restarts": park.restarts,
                "window_seconds": self._window,
                "cooloff_seconds": park.cooloff,
                "loop": park.loop,
            },
            restarts=park.restarts,
        )

    @property
    def remounts(self) -> bool:
        """True while a twin noted by ``remount`` waits for its restart."""
        return bool(self._remounts)

    def remount(self, twin_uuids: Iterable[str]) -> None:
        """Note twins whose file was made anew; ``remount_due`` restarts
        their drivers (a running container sees the old file until its
        mounts are made again)."""
        self._remounts.update(twin_uuids)

    def remount_due(
        self,
        runtime: DockerRuntime,
        views: Sequence[ContainerView],
        *,
        known: bool,
    ) -> None:
        """Restart the running drivers of the twins noted by ``remount``.

        Only a running driver is restarted: a stopped one (parked, exited)
        mounts the file at the path when it next starts, and a paused one
        is left alone until it runs again. ``known`` says whether a pass
        has said which containers are desired; until then a twin with no
        container yet stays noted.
        """
        for twin_uuid in sorted(self._remounts):
            mine = [v for v in views if v.twin_uuid == twin_uuid]
            if any(v.state is ContainerState.PAUSED for v in mine):
                continue
            if not mine and not known:
                continue
            self._remounts.discard(twin_uuid)
            for view in mine:
                if not view.running:
                    continue
                try:
                    runtime.restart(view.name, fingerprint=self._fingerprint)
                except EdgeCoreError as exc:
                    log.warning(
                        "could not restart %s for its twin file: %s", view.name, exc
                    )

    # -- parking across edge core restarts ---------------------------------

    def restore(self, previous: Iterable[DriverStatus]) -> None:
        """Take over the drivers the previous run had parked (their rows in
        the last state file): those in their cool-off stay parked until
        its end, those being retried go on being watched as such, and
        both keep their loop count and their alert."""
        now = time.time()
        for status in previous:
            if status.outcome != "flapping" or status.parked_until is None:
                continue
            self._supervisor.restore(
                status.container_name,
                twin_uuid=status.twin_uuid,
                parked_until_wall=status.parked_until,
                restarts=status.restarts or 0,
                loops=status.loops or 1,
                spec_hash=status.spec_hash,
            )
            if status.parked_until <= now:
                log.info(
                    "%s is being retried after restart loop %d (before this "
                    "start); released once it runs steadily",
                    status.container_name,
                    status.loops or 1,
                )
                continue
            log.info(
                "%s stays parked until %s (restart loop before this start)",
                status.container_name,
                time.strftime("%H:%M:%S UTC", time.gmtime(status.parked_until)),
            )

    def rows(self, result: PassResult | None) -> tuple[DriverStatus, ...]:
        """The last pass's driver rows, parked ones marked as flapping."""
        if result is None:
            return ()
        flapping = self._supervisor.flapping()
        rows: list[DriverStatus] = []
        for status in result.drivers:
            info = flapping.get(status.container_name)
            if info is not None:
                status = replace(
                    status,
                    outcome="flapping",
                    restarts=info.restarts,
                    parked_until=info.parked_until,
                    loops=info.loops,
                    spec_hash=info.spec_hash,
                )
            rows.append(status)
        return tuple(rows)

    def _follow_running(
        self,
        forwarder: LogForwarder,
        views: Sequence[ContainerView],
        desired: Mapping[str, Desired],
    ) -> None:
        for view in views:
            wanted = desired.get(view.name)
            if wanted is None or not view.running:
                continue
            forwarder.follow(
                FollowTarget(
                    container_name=view.name,
                    twin_uuid=wanted.twin_uuid,
                    image=view.image,
                    topic=topics.driverlog(self._prefix, wanted.twin_uuid),
                )
            )
