"""The composition root: the startup sequence, the loop, signals.

``run()`` builds every object from one ``Settings`` and runs until SIGTERM
or SIGINT. The boot follows protocol.md 5.1 with the rules of 7b: only a
rejected token or an unusable ``credentials.json`` is fatal; an
unreachable backend, broker or Docker engine is waited for, and drivers of
the last persisted desired state start meanwhile.

The main thread owns the loop. Slow work (a driver pass with its pulls)
runs on one worker thread so a stop request is answered within seconds;
containers are never stopped on shutdown (7b item 15).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import replace
from typing import TypeVar

from edge_core import __version__, systemd
from edge_core.alerts.book import AlertBook
from edge_core.backoff import Backoff
from edge_core.cloud import topics
from edge_core.cloud.mqtt import (
    MqttSession,
    check_broker,
)
from edge_core.cloud.rest import CloudClient
from edge_core.commands import CommandInbox
from edge_core.config.credentials import (
    Credentials,
    read_token,
)
from edge_core.config.fingerprint import host_identity
from edge_core.config.reload import reread
from edge_core.config.settings import Settings
from edge_core.drivers.engine import EngineLink, LogOptions
from edge_core.drivers.guard import DriverGuard, PassDue, desired_of
from edge_core.drivers.log_positions import PositionKeeper, positions_path
from edge_core.drivers.logs import LogForwarder
from edge_core.drivers.reconcile import DriverReconciler, PassOptions, PassResult
from edge_core.drivers.router import RouterKeeper
from edge_core.drivers.supervisor import Supervisor
from edge_core.drivers.verdict import Desired
from edge_core.errors import (
    AuthError,
    BackendUnavailable,
    ConfigError,
    EdgeCoreError,
    RuntimeUnavailable,
)
from edge_core.health import BootstrapHealth, BootstrapHealthPublisher
from edge_core.host.metrics import HostMetricsSampler, host_facts
from edge_core.host.platform import detect_platform, profile_keys
from edge_core.logsetup import (
    RedactingFilter,
)
from edge_core.logsetup import redact as logsetup_redact
from edge_core.model.linkage import linked_twins
from edge_core.presence import (
    Attempt,
    BackendStatus,
    DiscoverKeepalive,
    Registration,
)
from edge_core.restart import RemoteRestart, tear_down_drivers
from edge_core.runtime.docker import DockerRuntime, EngineFacts
from edge_core.runtime.watch import ContainerWatch
from edge_core.state import (
    DaemonState,
    StateWriter,
    read_state,
    state_path,
)
from edge_core.twins import desired_state
from edge_core.twins.desired_state import Snapshot
from edge_core.twins.keeper import DesiredStateKeeper
from edge_core.twins.sync import TwinSync
from edge_core.wiring import driver_context, launch_context, mqtt_config

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1

T = TypeVar("T")

# Changed driver log read positions are written once per this many loops,
# or once a minute if that is sooner: lines forwarded since the last write
# are sent again after a power cut, never lost.
LOG_POSITIONS_LOOPS = 4
# A converged edge runs a full driver pass at least once per this many loops.
SAFETY_PASS_LOOPS = 20
# Engine events after which the loop looks at the drivers at once.
_DOWN_EVENTS = frozenset({"die", "destroy", "oom", "stop", "kill"})

# How often the main thread looks at the stop flag while it waits for a
# backend or broker call running on the helper thread.
_STOP_POLL_SECONDS = 0.1


class _Stopping(Exception):
    """A stop was requested while the main thread waited for a slow call."""


class Daemon:
    """Owns the loop and every long-lived object of one edge core process."""

    def __init__(
        self,
        *,
        settings: Settings,
        credentials: Credentials,
        fingerprint: str,
        redactor: RedactingFilter | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``environ`` is the process environment before the ``envs`` block
        of credentials.json was applied (a restart applies it again)."""
        self.settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self.credentials = credentials
        self.fingerprint = fingerprint
        self._redactor = redactor
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._started_at = time.time()
        self._facts = detect_platform(settings.platform_variant)
        self._config_dir = settings.config_dir
        self._prefix = settings.mqtt_topic_prefix
        self._cloud = CloudClient(
            base_url=settings.base_url,
            token=self._token,
            reload_token=self._reload_token,
            timeout=max(30.0, settings.rest_timeout),
            retries=settings.rest_retries,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            workspace_id=settings.workspace_id,
            user_agent_prefix=settings.client_user_agent,
            version=__version__,
        )
        self._mqtt = MqttSession(mqtt_config(settings, credentials.token))
        self._metrics = HostMetricsSampler(min_interval=30.0)
        self._health = BootstrapHealth(self._health_publisher)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pass")
        # Backend and broker calls can hang for minutes (no answer, long
        # timeouts and retries); they run here so SIGTERM is answered at once.
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud")
        self._pass: Future[PassResult] | None = None
        self._pass_due = 0.0
        self._pull_next = False
        self._backend = BackendStatus()
        self._registration = Registration(
            self._cloud,
            settings.config_dir,
            fingerprint,
            status=self._backend,
            backoff=Backoff(settings.backoff_initial, settings.backoff_max),
            call=self._wait_for,
            keepalive=self._keepalive,
            clock=clock,
        )
        self._download_error: str | None = None
        self._broker_down_since: float | None = None
        self._phase = "starting"
        # Set while boot waits on the backend; see _boot_waits_long.
        self._backend_wait_since: float | None = None
        saved = desired_state.load(settings.config_dir)
        self._twin_sync = TwinSync(
            settings.config_dir,
            self._cloud,
            baselines=saved.twin_baselines if saved is not None else {},
            clock=clock,
            settle=settings.reconcile_interval,
            mounted_inode=self._mounted_inode,
        )
        self._desired_state = DesiredStateKeeper(
            settings.config_dir,
            self._cloud,
            self._twin_sync,
            saved=saved,
            fingerprint=fingerprint,
            interval=settings.reconcile_interval,
            wake=self._wake.set,
            clock=clock,
        )
        self._alerts = AlertBook.create(
            self._cloud,
            settings,
            redact=redactor.redact if redactor is not None else logsetup_redact,
        )
        self._supervisor = Supervisor.from_settings(settings, clock=clock)
        previous = read_state(settings.config_dir)
        self._guard = DriverGuard(
            self._supervisor,
            self._alerts,
            fingerprint=fingerprint,
            topic_prefix=self._prefix,
            window=settings.driver_restart_loop_window,
            troubleshooting_url=settings.driver_troubleshooting_url,
            environment_of=self._desired_state.environment_of,
        )
        self._guard.restore(previous.drivers if previous else ())
        self._desired: dict[str, Desired] = {}
        self._router = RouterKeeper(fingerprint=fingerprint, version=__version__)
        self._inbox = CommandInbox(self._wake)
        # Held by a restart job while it runs: supervision stays away then.
        self._restart_lock = threading.Lock()
        self._restarts: RemoteRestart[tuple[PassResult, Snapshot | None]] = (
            RemoteRestart(self._alerts, self._pool.submit, self._wake.set)
        )
        self._restarts.resume(previous.restart if previous else None)
        self._command_topic: str | None = None
        self._last_result: PassResult | None = None
        self._last_summary: str | None = None
        self._summaries_told: set[str] = set()
        self._linked: tuple[str, ...] = ()
        self._state_writer = StateWriter(state_path(settings.config_dir))
        self._positions = PositionKeeper(
            positions_path(settings.config_dir),
            every=min(60.0, settings.reconcile_interval * LOG_POSITIONS_LOOPS),
            clock=clock,
        )
        self._watchdog_every = systemd.watchdog_interval()
        self._watchdog_at = float("-inf")
        self._link = EngineLink(
            options=PassOptions.from_settings(
                settings,
                fingerprint=fingerprint,
                profile_keys=profile_keys(self._facts),
                version=__version__,
            ),
            logs=LogOptions(
                version=__version__,
                cold_start_tail=settings.driver_log_tail,
                fingerprint=fingerprint,
                buffer_lines=settings.driver_log_buffer_lines,
                connected=lambda: self._mqtt.can_send,
                positions=self._positions.load,
            ),
            publish=self._mqtt.publish,
            alerts=self._alerts,
            twin_files=self._twin_sync.ensure_files,
            backoff=Backoff(settings.backoff_initial, settings.backoff_max),
            watch_max_age=settings.reconcile_interval * SAFETY_PASS_LOOPS,
            on_change=self._container_event,
            on_launch=self._guard.launched,
            clock=clock,
        )

    # -- tokens ---------------------------------------------------------

    def _token(self) -> str:
        return self.credentials.token

    def _reload_token(self) -> str:
        token = read_token(self.credentials.path)
        if token != self.credentials.token:
            log.info(
                "API token changed in %s; using the new one", self.credentials.path
            )
            self.credentials = replace(self.credentials, token=token)
            if self._redactor is not None:
                self._redactor.add_secret(token)
        return token

    # -- lifecycle ------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Boot, then loop until asked to stop; returns the exit code."""
        try:
            code = self._boot()
            if code is not None:
                return code
            systemd.notify("READY=1")
            # Boot calls may take long; from now on each attempt has the
            # configured timeout (protocol.md 5.1, step 13).
            self._cloud.set_timeout(self.settings.rest_timeout)
            log.info(
                "edge core %s is up (fingerprint %s)", __version__, self.fingerprint
            )
            self._loop()
            return EXIT_OK
        except _Stopping:
            return EXIT_OK
        finally:
            self._shutdown()

    def _wait_for(self, call: Callable[[], T]) -> T:
        """Run a blocking call on the helper thread; raise _Stopping on a stop.

        The call itself is abandoned, not interrupted: the process exits
        without waiting for it.
        """
        future = self._calls.submit(call)
        while True:
            try:
                return future.result(timeout=_STOP_POLL_SECONDS)
            except FuturesTimeout:
                # The call itself may have raised a TimeoutError.
                if future.done():
                    raise
                if self._stop.is_set():
                    raise _Stopping from None
                self._ping_watchdog()
                self._boot_waits_long()

    def _boot_waits_long(self) -> None:
        """At boot, a backend that has not answered within one runtime
        timeout counts as away for the drivers (7b item 13): those of the
        saved desired state start while the boot calls go on waiting."""
        since = self._backend_wait_since
        if since is None or self._clock() - since < self.settings.rest_timeout:
            return
        self._backend_wait_since = None
        if self._desired_state.use_saved():
            log.warning(
                "the backend has not answered for %.0f s; starting the drivers "
                "of the saved desired state while waiting for it",
                self.settings.rest_timeout,
            )
            self._pass_due = 0.0
            self._submit_pass()
            self._write_state()

    def _boot(self) -> int | None:
        self._write_state()
        reachable = self._wait_for(self._check_broker)
        self._mqtt.start()
        if reachable:
            # Health and pull progress published before the session is up
            # would be lost; a broker that just answered connects quickly.
            timeout = self.settings.mqtt_connect_timeout
            self._wait_for(lambda: self._mqtt.wait_connected(timeout))
        self._connect_docker()

        self._backend_wait_since = self._clock()
        try:
            return self._check_and_register()
        finally:
            self._backend_wait_since = None

    def _check_and_register(self) -> int | None:
        try:
            self._wait_for(self._cloud.check_token)
        except AuthError as exc:
            log.error(
                "the API token in %s was rejected: %s",
                self.credentials.path,
                exc,
            )
            self._phase = "token_rejected"
            self._write_state()
            return EXIT_FATAL
        except BackendUnavailable as exc:
            self._backend_down(exc)
            self._start_from_snapshot()
            return None
        self._try_register()
        return None

    def _check_broker(self) -> bool:
        """The boot connectivity check; True when the broker answered."""
        config = mqtt_config(self.settings, self.credentials.token)
        try:
            check_broker(config)
        except EdgeCoreError as exc:
            log.warning(
                "MQTT broker %s:%s is not reachable: %s; drivers start "
                "anyway and the session keeps retrying",
                config.host,
                config.port,
                exc,
            )
            return False
        log.info("MQTT broker %s:%s is reachable", config.host, config.port)
        return True

    def _connect_docker(self) -> bool:
        return self._link.connect() is not None

    # What exists while the engine is connected.

    @property
    def _runtime(self) -> DockerRuntime | None:
        engine = self._link.engine
        return engine.runtime if engine else None

    @property
    def _reconciler(self) -> DriverReconciler | None:
        engine = self._link.engine
        return engine.reconciler if engine else None

    def _mounted_inode(self, twin_uuid: str) -> int | None:
        """The inode of the twin file the twin's running driver has mounted."""
        watch = self._watch
        if watch is None:
            return None
        try:
            views = watch.views()
        except EdgeCoreError:
            return None
        for view in views:
            if view.twin_uuid == twin_uuid and view.running:
                inode = view.file_inode(f"/app/{twin_uuid}.json")
                if inode is not None:
                    return inode
        return None

    @property
    def _watch(self) -> ContainerWatch | None:
        engine = self._link.engine
        return engine.watch if engine else None

    @property
    def _engine(self) -> EngineFacts | None:
        engine = self._link.engine
        return engine.facts if engine else None

    @property
    def _forwarder(self) -> LogForwarder | None:
        return self._link.forwarder

    def _backend_down(self, exc: EdgeCoreError) -> None:
        self._registration.failed(exc)
        self._went_offline()

    def _went_offline(self) -> None:
        self._phase = "waiting_for_backend"
        self._start_from_snapshot()
        self._write_state()

    def _try_register(self) -> bool:
        """Token check and registration; True once the edge is registered."""
        attempt = self._registration.attempt()
        if attempt is Attempt.FAILED:
            self._went_offline()
        elif attempt is Attempt.REGISTERED:
            self._phase = "running"
        return attempt is Attempt.REGISTERED

    def _keepalive(self) -> DiscoverKeepalive:
        hostname, _mac, plat = host_identity()
        return DiscoverKeepalive(
            self._cloud,
            fingerprint=self.fingerprint,
            hostname=hostname,
            platform=plat,
            host_facts=host_facts,
            interval=self.settings.discover_interval,
        )

    # -- environment and downloads ----------------------------------------

    def _start_from_snapshot(self) -> None:
        """Run drivers from the persisted desired state while the backend is away."""
        if self._desired_state.use_saved():
            self._pass_due = 0.0

    def _start_download(self) -> None:
        if self._registration.edge is None or self._restarts.busy:
            return
        self._desired_state.start_download()

    def _collect_download(self) -> None:
        collected = self._desired_state.collect()
        if collected is None:
            return
        error = collected.error
        if isinstance(error, BackendUnavailable | AuthError | ConfigError):
            # The backend is away, or will not take the token (a rotated
            # one in credentials.json is picked up): not the environment's fault.
            if self._backend.failed(error):
                log.warning(
                    "could not download the environment: %s; drivers keep "
                    "running, retrying every %.0f s",
                    error,
                    self.settings.reconcile_interval,
                )
            self._start_from_snapshot()
            return
        if error is not None:
            environment = self._desired_state.environment
            path = environment.path if environment else "environment.json"
            problem = f"{path}: {error}"
            if problem != self._download_error:
                log.error(
                    "could not download the environment: %s; check the uuid in %s",
                    error,
                    path,
                )
            self._download_error = problem
            self._start_from_snapshot()
            return
        if self._backend.answered():
            log.info("backend reachable again; environment downloaded")
        self._download_error = None
        if collected.changed:
            self._pull_next = self._pull_next or collected.fresh
            self._pass_due = 0.0
        if collected.remount:
            self._guard.remount(collected.remount)
            self._wake.set()

    # -- driver passes ---------------------------------------------------

    def _submit_pass(self) -> None:
        snapshot = self._desired_state.snapshot
        if (
            snapshot is None
            or not self._desired_state.current
            or self._reconciler is None
            or self._pass is not None
            or self._restarts.busy
            or self._clock() < self._pass_due
        ):
            return
        self._pass_due = self._clock() + self.settings.reconcile_interval
        pull, self._pull_next = self._pull_next, False
        self._pass = self._pool.submit(self._pass_job, snapshot, pull)
        self._pass.add_done_callback(lambda _f: self._wake.set())

    def _pass_job(self, snapshot: Snapshot, pull: bool) -> PassResult:
        """A driver pass on the pass thread, the Zenoh router first."""
        reconciler = self._reconciler
        if reconciler is None:
            raise RuntimeUnavailable("the Docker engine went away")
        # The model's views drop duplicates and uuids unfit for a topic.
        self._linked = tuple(
            twin.uuid for twin in linked_twins(snapshot.twins, self.fingerprint)
        )
        self._health.needed(bool(self._linked))
        self._router.ensure(
            self._runtime_now(), self.settings, snapshot.environment_uuid
        )
        return self._run_pass(reconciler, snapshot, pull=pull, held=True)

    def _run_pass(
        self,
        reconciler: DriverReconciler,
        snapshot: Snapshot,
        *,
        pull: bool,
        held: bool,
    ) -> PassResult:
        """One driver pass over ``snapshot``; ``held``: the supervisor's holds apply."""
        return reconciler.run_pass(
            twins=snapshot.twins,
            assets=snapshot.assets,
            ctx=driver_context(self.settings, self.credentials, self._facts),
            launch=launch_context(
                self.settings, self.fingerprint, self._facts, self._engine
            ),
            driver_overrides=self.credentials.driver_overrides,
            pull=pull,
            hold=self._supervisor.hold() if held else {},
            hold_reason=self._supervisor.hold_reason if held else None,
        )

    def _runtime_now(self) -> DockerRuntime:
        runtime = self._runtime
        if runtime is None:
            raise RuntimeUnavailable("the Docker engine went away")
        return runtime

    def _collect_pass(self) -> None:
        if self._pass is None or not self._pass.done():
            return
        future, self._pass = self._pass, None
        try:
            result = future.result()
        except RuntimeUnavailable as exc:
            self._lost_docker(exc)
            return
        except Exception:
            log.exception("driver pass failed; it will run again next cycle")
            return
        self._record_pass(result)

    def _record_pass(self, result: PassResult) -> None:
        """Take a pass's outcome into the supervisor, the log and health."""
        self._desired = self._guard.record(result)
        summary = _summary(result)
        if summary != self._last_summary:
            # Each summary is said once at INFO: a driver flapping between
            # two of them would otherwise fill the log (its launches have
            # lines of their own).
            told = summary in self._summaries_told
            self._summaries_told.add(summary)
            level = logging.DEBUG if told else logging.INFO
            log.log(level, "driver pass done: %s", summary)
            self._last_summary = summary
        self._last_result = result
        if result.converged:
            # Supervision triggers the next pass when a container stops; a
            # pass every few minutes still catches drift.
            self._pass_due = max(
                self._pass_due,
                self._clock() + self.settings.reconcile_interval * SAFETY_PASS_LOOPS,
            )
        if result.all_running:
            # Drivers publish their own health from now on (protocol.md 2.5).
            self._health.drivers_running()

    def _lost_docker(self, exc: EdgeCoreError) -> None:
        self._link.lost(exc)
        self._router.forget()
        self._pass_due = 0.0

    def _health_publisher(self) -> BootstrapHealthPublisher:
        return BootstrapHealthPublisher(
            publish=self._mqtt.publish,
            topic_for=lambda twin: topics.edge_health(self._prefix, twin),
            fingerprint=self.fingerprint,
            twins=lambda: self._linked,
            interval=self.settings.health_publish_interval,
            metrics=self._metrics,
            watchdog_layers=("systemd",) if systemd.watchdog_interval() else (),
            battery_wh=self.settings.battery_wh,
        )

    # -- supervision ------------------------------------------------------

    def _supervise(self) -> None:
        """Watch the driver containers and act on what changed.

        Also while a pass runs (a long pull must not hide a crash), leaving
        the containers it is launching to it; a restart owns them all.
        """
        runtime = self._runtime
        if runtime is None or not self._restart_lock.acquire(blocking=False):
            return
        try:
            self._supervise_with(runtime)
        finally:
            self._restart_lock.release()

    def _supervise_with(self, runtime: DockerRuntime) -> None:
        reconciler = self._reconciler if self._pass is not None else None
        # The first pass may pull for minutes: what it started so far is
        # watched already.
        desired = dict(self._desired)
        if reconciler is not None:
            desired.update(desired_of(reconciler.in_flight()))
        if not desired and self._router.name is None and not self._guard.remounts:
            return
        try:
            views = self._watch.views() if self._watch else []
        except RuntimeUnavailable as exc:
            self._lost_docker(exc)
            return
        except EdgeCoreError as exc:
            log.warning("could not list driver containers: %s", exc)
            return
        self._router.watch(views)
        busy = reconciler.launching() if reconciler is not None else frozenset()
        # A container the pass is launching mounts the file as it is now.
        self._guard.remount_due(
            runtime,
            [v for v in views if v.name not in busy],
            known=bool(self._desired),
        )
        if not desired:
            return
        due = self._guard.look(runtime, views, desired, self._forwarder, busy=busy)
        now = self._clock()
        if due is PassDue.NOW:
            self._pass_due = min(self._pass_due, now)
        elif due is PassDue.NEXT_CYCLE:
            interval = self.settings.reconcile_interval
            self._pass_due = min(self._pass_due, now + interval)

    def _container_event(self, action: str) -> None:
        """A driver that died or vanished is looked at now, not next cycle."""
        if action in _DOWN_EVENTS and not self._restarts.busy:
            self._wake.set()

    # -- remote commands --------------------------------------------------

    def _subscribe_commands(self) -> None:
        edge_uuid = (self._registration.edge or {}).get("uuid")
        if not isinstance(edge_uuid, str) or not edge_uuid:
            return
        topic = topics.edge_command(self._prefix, edge_uuid)
        if topic == self._command_topic:
            return
        if self._command_topic is not None:
            self._mqtt.unsubscribe(self._command_topic)
        self._mqtt.subscribe(topic, self._inbox.on_message)
        self._command_topic = topic
        log.info("listening for commands on %s", topic)

    def _handle_commands(self) -> None:
        for command in self._inbox.drain():
            if self._restarts.request(command, self._exclusive_restart_job):
                if self._pass is not None and self._reconciler is not None:
                    # A restart does not wait for a stalled pull.
                    self._reconciler.interrupt("restart_edge_core is waiting")
                self._write_state()

    def _exclusive_restart_job(self) -> tuple[PassResult, Snapshot | None]:
        """The restart job, with supervision kept away while it runs (it
        owns every driver container); while it waits, supervision goes on."""
        with self._restart_lock:
            return self._restart_job()

    def _restart_job(self) -> tuple[PassResult, Snapshot | None]:
        """The graceful restart of protocol.md 2.6, on the pass thread."""
        runtime = self._runtime
        reconciler = self._reconciler
        if runtime is None or reconciler is None:
            raise RuntimeUnavailable("the Docker engine is not reachable")
        tear_down_drivers(
            runtime,
            fingerprint=self.fingerprint,
            twin_sync=self._twin_sync,
            supervisor=self._supervisor,
            alerts=self._alerts,
        )
        environment = self._desired_state.reload_environment()
        self._reload_configuration()
        self._guard.release(self._supervisor.reset())
        snapshot = self._desired_state.for_restart(environment)
        self._router.restart(runtime, self.settings, snapshot.environment_uuid)
        self._linked = tuple(
            twin.uuid for twin in linked_twins(snapshot.twins, self.fingerprint)
        )
        return self._run_pass(reconciler, snapshot, pull=True, held=False), snapshot

    def _reload_configuration(self) -> None:
        """Re-read credentials.json and the settings the restarted drivers get.

        The token, the driver overrides and the ``envs`` block apply to
        the drivers this restart starts; settings of the edge core's own
        connections and timings apply when it starts again, and are named.
        """
        try:
            again = reread(self._config_dir, self._environ, self.settings)
        except ConfigError as exc:
            log.warning("%s; keeping the credentials read at start", exc)
            return
        if again.credentials.token != self.credentials.token and self._redactor:
            self._redactor.add_secret(again.credentials.token)
        self.credentials, self.settings = again.credentials, again.settings
        for warning in again.new_warnings:
            log.warning("%s", warning)
        if again.later:
            log.warning(
                "%s changed in %s; they apply when the edge core starts again "
                "(sudo systemctl restart cyberwave-edge-core)",
                ", ".join(again.later),
                again.credentials.path,
            )

    def _collect_restart(self) -> None:
        finished = self._restarts.collect()
        if finished is None:
            return
        if isinstance(finished.error, RuntimeUnavailable):
            self._lost_docker(finished.error)
        if finished.result is None:
            # The drivers it removed are not missing: nothing is desired
            # until a pass of the desired state says so again.
            self._desired = {}
            self._last_result = None
            self._pass_due = 0.0
            return
        result, snapshot = finished.result
        if snapshot is not None:
            self._desired_state.adopt(snapshot, fresh=False)
        self._record_pass(result)
        self._pass_due = self._clock() + self.settings.reconcile_interval

    # -- the loop -------------------------------------------------------

    def _loop(self) -> None:
        interval = self.settings.reconcile_interval
        while not self._stop.is_set():
            try:
                self._tick()
            except _Stopping:
                return
            except Exception:
                log.exception("loop iteration failed; continuing next cycle")
            self._wake.wait(self._next_wait(interval))
            self._wake.clear()

    def _next_wait(self, interval: float) -> float:
        now = self._clock()
        waits = [interval]
        if self._watchdog_every is not None:
            waits.append(self._watchdog_every / 2)
        register_due = self._registration.retry_due
        if register_due is not None:
            waits.append(max(0.1, register_due - now))
        docker_due = self._link.retry_due
        if docker_due is not None:
            waits.append(max(0.1, docker_due - now))
        for due in (self._pass_due, self._desired_state.due):
            if due > now:
                waits.append(due - now)
        return max(0.05, min(waits))

    def _ping_watchdog(self) -> None:
        """Tell systemd's watchdog the process is alive (at most twice a period)."""
        if self._watchdog_every is None:
            return
        now = self._clock()
        if now - self._watchdog_at >= self._watchdog_every / 2:
            systemd.notify("WATCHDOG=1")
            self._watchdog_at = now

    def _tick(self) -> None:
        self._ping_watchdog()
        self._connect_docker()
        self._try_register()
        self._subscribe_commands()
        self._collect_restart()
        self._collect_pass()
        self._handle_commands()
        self._desired_state.reload_environment()
        self._collect_download()
        self._start_download()
        self._supervise()
        self._submit_pass()
        if self._forwarder is not None:
            self._forwarder.flush()
            self._positions.save(self._forwarder.positions())
        self._note_broker()
        self._write_state()

    def _note_broker(self) -> None:
        if self._mqtt.is_connected:
            self._broker_down_since = None
        elif self._broker_down_since is None:
            self._broker_down_since = time.time()

    # -- state and shutdown ----------------------------------------------

    def _write_state(self) -> None:
        result = self._last_result
        forwarder = self._forwarder
        environment = self._desired_state.environment
        state = DaemonState(
            pid=os.getpid(),
            version=__version__,
            started_at=self._started_at,
            updated_at=time.time(),
            phase=self._phase,
            fingerprint=self.fingerprint,
            edge_uuid=(self._registration.edge or {}).get("uuid"),
            environment_uuid=environment.uuid if environment else None,
            backend_error=self._backend.error,
            backend_token_refused=self._backend.token_refused,
            environment_error=(
                self._desired_state.environment_error or self._download_error
            ),
            mqtt_connected=self._mqtt.is_connected,
            settings_warnings=tuple(self.settings.warnings),
            drivers=self._guard.rows(self._last_result),
            orphans=result.orphans if result else (),
            linked_twins=self._linked,
            without_driver=dict(result.without_driver) if result else {},
            log_lines_dropped=forwarder.dropped if forwarder else 0,
            restart=self._restarts.state,
            offline_since=self._backend.since,
            desired_known=self._desired_state.current,
            broker_down_since=self._broker_down_since,
            zenoh_router=self._router.name,
            zenoh_router_error=self._router.error,
            zenoh_router_state=self._router.state,
            zenoh_router_note=self._router.note,
            twin_file_problems=self._twin_sync.problems(),
        )
        self._state_writer.write(state)

    def _shutdown(self) -> None:
        log.info("stopping the edge core; driver containers keep running")
        # A rejected token stays the last word, so status can say why.
        if self._phase != "token_rejected":
            self._phase = "stopped"
        self._restarts.abandon()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._router.close()
        self._desired_state.close()
        self._health.stop()
        self._registration.stop()
        self._link.stop()
        if self._forwarder is not None:
            self._positions.save(self._forwarder.positions(), now=True)
        self._alerts.stop(timeout=2.0)
        self._mqtt.stop()
        self._write_state()


def _summary(result: PassResult) -> str:
    counts: dict[str, int] = {}
    for status in result.drivers:
        counts[status.outcome] = counts.get(status.outcome, 0) + 1
    if not counts:
        return "no driver containers"
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
