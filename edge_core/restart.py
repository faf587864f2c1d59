"""``restart_edge_core``: one at a time, its alert walked to the end.

A remote restart (protocol.md 2.6) runs as a job on the daemon's pass
thread. This module keeps that job single-flight (a second command while
one runs fails on its own ``edge_core_restart`` alert as a
``concurrent_restart``), walks the backend's alert from ``in_progress`` to
``completed`` or ``failed``, and keeps the outcome ``status`` shows. It
also holds the teardown half of the sequence: push local twin edits, drop
the cached twin files (keeping those whose push failed, 7b item 22),
remove the edge's driver containers, prune its stopped ones and resolve
the leftover starting alerts.

What the restart starts again (the environment download and the driver
pass) is the daemon's job, given to ``request`` as a callable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from edge_core.alerts.book import AlertBook, RestartAlert
from edge_core.commands import EdgeCommand
from edge_core.drivers.supervisor import Supervisor
from edge_core.logsetup import format_exception_line
from edge_core.model.spec import LABEL_MIN_RESTART
from edge_core.runtime.docker import DockerRuntime
from edge_core.twins.sync import TwinSync

log = logging.getLogger(__name__)

T = TypeVar("T")

DRIVER_PREFIX = "cyberwave-driver-"
STARTING_ALERTS = ("driver_starting", "worker_starting")
STOPPED = "the edge core was stopped during the restart"
"""Why a restart that did not finish failed."""

Submit = Callable[[Callable[[], T]], "Future[T]"]


@dataclass(frozen=True)
class Finished(Generic[T]):
    """How a restart ended: the job's result, or the error it raised."""

    result: T | None = None
    error: Exception | None = None


class RemoteRestart(Generic[T]):
    """Runs restart jobs one at a time and reports each on its alert.

    ``submit`` runs a job on the caller's worker thread and returns its
    future; ``wake`` is called when a job ends so the loop collects it.
    """

    def __init__(
        self, alerts: AlertBook, submit: Submit[T], wake: Callable[[], None]
    ) -> None:
        self._alerts = alerts
        self._submit = submit
        self._wake = wake
        self._future: Future[T] | None = None
        self._alert: RestartAlert | None = None
        self.state: dict[str, Any] | None = None
        """The last restart for ``status``: request id, phase, time, error."""

    @property
    def busy(self) -> bool:
        """True while a restart runs or waits to be collected."""
        return self._future is not None

    def request(self, command: EdgeCommand, job: Callable[[], T]) -> bool:
        """Start ``job`` for ``command``; False when another restart runs."""
        alert = self._alert_of(command)
        if self._future is not None:
            log.info(
                "restart_edge_core (request_id %s) refused: a restart is already "
                "in progress",
                command.request_id,
            )
            if alert is not None:
                alert.concurrent()
            return False

        log.info("restart_edge_core received (request_id %s)", command.request_id)
        if alert is not None:
            alert.in_progress()
        self.state = {
            "request_id": command.request_id,
            "alert_uuid": command.alert_uuid,
            "phase": "in_progress",
            "at": time.time(),
            "error": None,
        }
        future = self._submit(job)
        future.add_done_callback(lambda _f: self._wake())
        self._future = future
        self._alert = alert
        return True

    def collect(self) -> Finished[T] | None:
        """The outcome of a restart that ended; None while none did."""
        future = self._future
        if future is None or not future.done():
            return None
        self._future = None
        alert, self._alert = self._alert, None
        state = dict(self.state or {})
        try:
            result = future.result()
        except Exception as exc:
            log.error("restart_edge_core failed: %s", format_exception_line(exc))
            if alert is not None:
                alert.failed(str(exc))
            state.update(phase="failed", at=time.time(), error=str(exc)[:500])
            self.state = state
            return Finished(error=exc)

        log.info("restart_edge_core completed")
        if alert is not None:
            alert.completed()
        state.update(phase="completed", at=time.time(), error=None)
        self.state = state
        return Finished(result=result)

    def resume(self, previous: Mapping[str, Any] | None) -> None:
        """Take over the last restart an earlier process reported.

        One it did not finish (killed, or stopped in the middle) ends
        failed, alert included, so the card does not stay open.
        """
        if not isinstance(previous, Mapping):
            return
        self.state = dict(previous)
        if previous.get("phase") != "in_progress":
            return
        reason = STOPPED
        log.warning("restart_edge_core of the last run did not finish: %s", reason)
        alert_uuid = previous.get("alert_uuid")
        if isinstance(alert_uuid, str) and alert_uuid:
            self._alerts.restart_alert(alert_uuid).failed(reason)
        self.state.update(phase="failed", at=time.time(), error=reason)

    def abandon(self, reason: str = STOPPED) -> None:
        """End a restart the process will not finish (it is stopping).

        Its alert is failed with ``reason`` (sent as the outbox stops) so
        it does not stay ``in_progress`` for good; the job is left behind.
        """
        if self._future is None:
            return
        self._future = None
        alert, self._alert = self._alert, None
        log.warning("restart_edge_core abandoned: %s", reason)
        if alert is not None:
            alert.failed(reason)
        state = dict(self.state or {})
        state.update(phase="failed", at=time.time(), error=reason)
        self.state = state

    def _alert_of(self, command: EdgeCommand) -> RestartAlert | None:
        if not command.alert_uuid:
            return None
        return self._alerts.restart_alert(command.alert_uuid)


def tear_down_drivers(
    runtime: DockerRuntime,
    *,
    fingerprint: str,
    twin_sync: TwinSync,
    supervisor: Supervisor,
    alerts: AlertBook,
) -> None:
    """The teardown steps of a restart (protocol.md 2.6, steps 2 and 4 to 8).

    Containers labelled with a restart floor are only stopped, every other
    driver container of this edge is removed with its volumes.
    """
    views = runtime.list_managed(fingerprint)
    twins = sorted({v.twin_uuid for v in views if v.twin_uuid})

    # Local edits go to the backend before the cached files go.
    pushed = twin_sync.push_changed()
    removed = twin_sync.remove_files(keep=set(pushed.failed))
    log.debug("removed cached twin files of %s", ", ".join(removed) or "no twin")

    for view in views:
        if not view.name.startswith(DRIVER_PREFIX):
            continue
        supervisor.stopped_by_us(view.name)
        if LABEL_MIN_RESTART in view.labels:
            runtime.stop(view.name, fingerprint=fingerprint)
        else:
            runtime.remove(view.name, force=True, volumes=True, fingerprint=fingerprint)
    runtime.prune_stopped(fingerprint)

    # Cards of the old launches would stay open after the restart.
    for twin_uuid in twins:
        alerts.resolve_active(twin_uuid, STARTING_ALERTS)
