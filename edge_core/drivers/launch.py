"""Launching one driver container: remove, create, start, probe.

A launch asks the supervisor's hold once more (it may have parked the
driver while its image was pulled), then removes what holds the name,
creates and starts the container and waits for it to run, settle or
fail. Each attempt's outcome is told to ``on_launch`` at once, so the
supervisor counts restarts and backs off failed launches while the rest
of the pass goes on. The containers being launched are listed, so that
supervision running beside the pass leaves them alone.

It plans nothing and pulls nothing; ``reconcile.DriverReconciler`` hands
it one planned launch at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from edge_core.alerts.launches import LaunchAlerts
from edge_core.cloud import topics
from edge_core.drivers.logs import FollowTarget, LogForwarder
from edge_core.drivers.planner import Launch
from edge_core.errors import ContainerError, DriverSpecError, EdgeCoreError
from edge_core.model.failures import TITLE_RUN_FAILED, TITLE_START_FAILED
from edge_core.model.spec import ContainerSpec
from edge_core.runtime.docker import DockerRuntime
from edge_core.runtime.errors import ForeignContainerError
from edge_core.runtime.probe import ProbeResult
from edge_core.state import DriverStatus

log = logging.getLogger(__name__)

_TAIL_LINES = 5

HoldReason = Callable[[str, str | None], str | None]
"""Why a container must not be launched now, given its state (None: absent)."""

OnLaunch = Callable[[str, str, bool, str | None], None]
"""Told each launch attempt: container name, spec hash, ok, failure reason."""


@dataclass(frozen=True)
class LaunchOptions:
    """The knobs of a launch (from ``PassOptions``)."""

    fingerprint: str
    topic_prefix: str
    probe_timeout: float
    probe_interval: float


def driver_status(
    spec: ContainerSpec,
    outcome: str,
    *,
    phase: str | None = None,
    reason: str | None = None,
) -> DriverStatus:
    """The status row of ``spec``'s container."""
    return DriverStatus(
        twin_uuid=spec.twin_uuid,
        container_name=spec.name,
        image=spec.image,
        outcome=outcome,
        phase=phase,
        reason=reason,
    )


def failure_detail(result: ProbeResult) -> str:
    """The probe's verdict plus the container's last lines, for the card."""
    tail = [line.strip() for line in result.log_tail if line.strip()]
    if not tail:
        return result.detail
    return f"{result.detail}; last output: {' | '.join(tail[-_TAIL_LINES:])}"


class Launcher:
    """Starts planned driver containers on one engine; thread-safe."""

    def __init__(
        self,
        runtime: DockerRuntime,
        options: LaunchOptions,
        forwarder: LogForwarder,
        *,
        on_launch: OnLaunch | None = None,
    ) -> None:
        self._runtime = runtime
        self._options = options
        self._forwarder = forwarder
        self._on_launch = on_launch
        self.adopted: set[str] = set()
        """Containers seen running by a pass; found again, they are no news."""
        self._launching: set[str] = set()
        self._lock = threading.Lock()

    def launching(self) -> frozenset[str]:
        """Containers being created, started or probed right now."""
        with self._lock:
            return frozenset(self._launching)

    def launch(
        self,
        step: Launch,
        probes: ThreadPoolExecutor,
        alerts: LaunchAlerts,
        *,
        hold: Callable[[], str | None],
    ) -> Future[DriverStatus] | DriverStatus:
        """Remove, create and start; the wait for running goes to ``probes``.

        ``hold`` is asked first (None: go ahead): supervision runs beside
        the pass and may have parked the driver while its image was pulled.
        """
        spec = step.spec
        reason = hold()
        if reason is not None:
            log.debug("not launching %s after all: %s", spec.name, reason)
            alerts.discard(spec.name)
            return driver_status(spec, "held", reason=reason)
        self._busy(spec.name, True)
        try:
            failed = self._start(step, alerts)
            if failed is None:
                return probes.submit(self._probed, spec, alerts)
        except BaseException:
            self._busy(spec.name, False)
            raise
        self._busy(spec.name, False)
        return self.told(spec, failed)

    def told(self, spec: ContainerSpec, status: DriverStatus) -> DriverStatus:
        """Tell ``on_launch`` the outcome of one attempt; returns ``status``."""
        if self._on_launch is not None:
            self._on_launch(
                spec.name, spec.spec_hash, status.outcome == "running", status.reason
            )
        return status

    def follow(self, spec: ContainerSpec) -> None:
        """Forward the container's log to its twin's driverlog topic."""
        self._forwarder.follow(
            FollowTarget(
                container_name=spec.name,
                twin_uuid=spec.twin_uuid,
                image=spec.image,
                topic=topics.driverlog(self._options.topic_prefix, spec.twin_uuid),
            )
        )

    def _busy(self, name: str, busy: bool) -> None:
        with self._lock:
            if busy:
                self._launching.add(name)
            else:
                self._launching.discard(name)

    def _probed(self, spec: ContainerSpec, alerts: LaunchAlerts) -> DriverStatus:
        try:
            return self.told(spec, self._await_running(spec, alerts))
        finally:
            self._busy(spec.name, False)

    def _start(self, step: Launch, alerts: LaunchAlerts) -> DriverStatus | None:
        """Remove, create and start; None when started, else the failure."""
        spec = step.spec
        fingerprint = self._options.fingerprint
        log.debug("%s %s: %s", step.action.value, spec.name, step.reason)
        alerts.launching(spec)
        try:
            self._runtime.remove(
                spec.name, force=True, volumes=True, fingerprint=fingerprint
            )
            # TODO: bound the create with CYBERWAVE_DRIVER_CREATE_TIMEOUT_SECONDS
            # and connect extra networks, as protocol 4.5 steps 2 and 3 say.
            self._runtime.create(spec, fingerprint=fingerprint)
            alerts.created(spec.name)
            self._runtime.start(spec.name, fingerprint=fingerprint)
        except (ForeignContainerError, DriverSpecError) as exc:
            # Nothing of ours was created; a container of someone else that
            # holds the name must never be touched, so there is no clean-up.
            log.error("driver %s cannot start: %s", spec.name, exc)
            return self._failed(
                spec, alerts, phase="docker_create_failed", detail=str(exc)
            )
        except ContainerError as exc:
            log.error("driver %s failed to start: %s", spec.name, exc)
            self._discard(spec.name)
            return self._failed(spec, alerts, phase=exc.phase, detail=str(exc))
        return None

    def _await_running(self, spec: ContainerSpec, alerts: LaunchAlerts) -> DriverStatus:
        """Probe a started driver until it runs, settles or fails."""
        opts = self._options
        try:
            result = self._runtime.probe(
                spec.name,
                fingerprint=opts.fingerprint,
                timeout=opts.probe_timeout,
                interval=opts.probe_interval,
            )
        except ContainerError as exc:
            log.error("driver %s could not be probed: %s", spec.name, exc)
            self._discard(spec.name)
            return self._failed(
                spec,
                alerts,
                phase=exc.phase,
                detail=str(exc),
                title=TITLE_START_FAILED,
            )
        if not result.ok:
            log.error("driver %s did not reach running: %s", spec.name, result.detail)
            self._discard(spec.name)
            return self._failed(
                spec,
                alerts,
                phase=result.phase,
                detail=failure_detail(result),
                title=TITLE_START_FAILED,
                reason=result.detail,
            )
        log.info("%s is running", spec.name)
        # Found running by a later pass, it is not news: no adoption line.
        self.adopted.add(spec.name)
        self.follow(spec)
        alerts.running(spec)
        return driver_status(spec, "running")

    def _failed(
        self,
        spec: ContainerSpec,
        alerts: LaunchAlerts,
        *,
        phase: str | None,
        detail: str,
        title: str = TITLE_RUN_FAILED,
        reason: str | None = None,
    ) -> DriverStatus:
        """A failed launch: its card, its start-failure alert, its status."""
        alerts.failed(spec, phase=phase, detail=detail, title=title)
        return driver_status(spec, "failed", phase=phase, reason=reason or detail)

    def _discard(self, name: str) -> None:
        try:
            self._runtime.remove(
                name, force=True, volumes=True, fingerprint=self._options.fingerprint
            )
        except EdgeCoreError as exc:
            log.warning("could not remove failed container %s: %s", name, exc)
