"""The connection to the Docker engine and what is built on it.

``EngineLink`` connects to the engine (retrying with capped backoff while
it is away), and then builds the parts that need it: the watch of this
edge's containers, the driver reconciler and the engine's facts. The log
forwarder is made once and outlives a lost connection, so a reconnect
resumes every driver's log where it was. ``lost`` drops the rest; the
next ``connect`` builds it again.

It decides nothing about drivers; it only keeps the parts at hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_core.alerts.book import AlertBook
from edge_core.backoff import Backoff
from edge_core.drivers.launch import OnLaunch
from edge_core.drivers.logs import LogForwarder, LogPosition, Publish
from edge_core.drivers.reconcile import DriverReconciler, PassOptions, TwinFiles
from edge_core.errors import EdgeCoreError, RuntimeUnavailable
from edge_core.runtime.docker import DockerRuntime, EngineFacts
from edge_core.runtime.watch import ContainerWatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engine:
    """The parts that exist while the engine is connected."""

    runtime: DockerRuntime
    watch: ContainerWatch
    reconciler: DriverReconciler
    facts: EngineFacts | None


@dataclass(frozen=True)
class LogOptions:
    """How the driver log forwarder is made (see ``LogForwarder``)."""

    version: str
    cold_start_tail: int
    fingerprint: str
    buffer_lines: int
    connected: Callable[[], bool]
    positions: Callable[[], dict[str, LogPosition]]
    """The read positions an earlier process kept."""


class EngineLink:
    """Connects to the engine when due and keeps what is built on it."""

    def __init__(
        self,
        *,
        options: PassOptions,
        logs: LogOptions,
        publish: Publish,
        alerts: AlertBook,
        twin_files: TwinFiles,
        backoff: Backoff,
        watch_max_age: float,
        on_change: Callable[[str], None],
        on_launch: OnLaunch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options = options
        self._on_launch = on_launch
        self._logs = logs
        self._publish = publish
        self._alerts = alerts
        self._twin_files = twin_files
        self._backoff = backoff
        self._watch_max_age = watch_max_age
        self._on_change = on_change
        self._clock = clock
        self.engine: Engine | None = None
        self.forwarder: LogForwarder | None = None
        self._away = False

    @property
    def retry_due(self) -> float | None:
        """When the next connection attempt is due, while disconnected."""
        if self.engine is not None or not self._backoff.due:
            return None
        return self._backoff.due

    def connect(self) -> Engine | None:
        """The connected parts, connecting first when due; None while away."""
        if self.engine is not None:
            return self.engine
        if self._clock() < self._backoff.due:
            return None
        try:
            runtime = DockerRuntime.connect()
        except RuntimeUnavailable as exc:
            delay = self._backoff.failed(self._clock())
            # Said once per outage; each retry is the DEBUG story.
            level = logging.DEBUG if self._away else logging.WARNING
            log.log(level, "%s; retrying in %.1f s", exc, delay)
            self._away = True
            return None
        self._backoff.reset()
        if self._away:
            log.info("Docker engine reachable again")
        self._away = False
        watch = ContainerWatch(
            runtime,
            self._options.fingerprint,
            max_age=self._watch_max_age,
            on_change=self._on_change,
        )
        watch.start()
        forwarder = self._forwarder_for(runtime)
        reconciler = DriverReconciler(
            runtime,
            options=self._options,
            publish=self._publish,
            forwarder=forwarder,
            alerts=self._alerts,
            twin_files=self._twin_files,
            on_launch=self._on_launch,
        )
        self.engine = Engine(runtime, watch, reconciler, _facts(runtime))
        return self.engine

    def lost(self, exc: EdgeCoreError) -> None:
        """The engine went away: drop what was built on it."""
        log.warning("%s; reconnecting, drivers are looked at again then", exc)
        self._away = True
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.watch.stop()

    def stop(self) -> None:
        """Stop the watch and the log followers (the process ends)."""
        if self.engine is not None:
            self.engine.watch.stop()
        if self.forwarder is not None:
            self.forwarder.stop()

    def _forwarder_for(self, runtime: DockerRuntime) -> LogForwarder:
        if self.forwarder is not None:
            # Read positions outlive an engine restart: no line is sent twice.
            self.forwarder.use(runtime)
            return self.forwarder
        logs = self._logs
        self.forwarder = LogForwarder(
            runtime,
            self._publish,
            version=logs.version,
            cold_start_tail=logs.cold_start_tail,
            fingerprint=logs.fingerprint,
            buffer_lines=logs.buffer_lines,
            connected=logs.connected,
        )
        self.forwarder.restore(logs.positions())
        return self.forwarder


def _facts(runtime: DockerRuntime) -> EngineFacts | None:
    try:
        engine = runtime.engine_facts()
    except EdgeCoreError as exc:
        log.warning("could not read the Docker engine's facts: %s", exc)
        return None
    if engine.has_nvidia and engine.default_runtime != "nvidia":
        log.info(
            "the nvidia runtime is installed but not the default; "
            'to give drivers GPUs set "default-runtime": '
            '"nvidia" in /etc/docker/daemon.json and restart Docker'
        )
    return engine
