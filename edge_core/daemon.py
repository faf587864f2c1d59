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
import signal
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import replace
from types import FrameType
from typing import Any, TypeVar

from edge_core import __version__, systemd
from edge_core.cloud import topics
from edge_core.cloud.mqtt import (
    MqttSession,
    check_broker,
)
from edge_core.cloud.rest import CloudClient
from edge_core.config.credentials import (
    Credentials,
    apply_envs,
    load_credentials,
    read_token,
)
from edge_core.config.environment import EnvironmentConfig, load_environment
from edge_core.config.fingerprint import host_identity, resolve_fingerprint
from edge_core.config.paths import (
    ensure_layout,
    migrate_legacy,
    repair_ownership,
    resolve_config_dir,
    target_owner,
)
from edge_core.config.settings import Settings, load_settings
from edge_core.drivers.logs import LogForwarder
from edge_core.drivers.reconcile import DriverReconciler, PassOptions, PassResult
from edge_core.errors import (
    AuthError,
    BackendUnavailable,
    ConfigError,
    EdgeCoreError,
    PermanentError,
    RuntimeUnavailable,
)
from edge_core.health import BootstrapHealthPublisher
from edge_core.host.metrics import HostMetricsSampler, host_facts
from edge_core.host.platform import detect_platform, profile_keys
from edge_core.logsetup import RedactingFilter, configure_logging, format_exception_line
from edge_core.model.linkage import linked_twins
from edge_core.presence import DiscoverKeepalive, register
from edge_core.runtime.docker import DockerRuntime, EngineFacts
from edge_core.state import DaemonState, StateWriter, state_path
from edge_core.twins import desired_state
from edge_core.twins.desired_state import Snapshot
from edge_core.twins.download import download_environment
from edge_core.wiring import Backoff, driver_context, launch_context, mqtt_config

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1

T = TypeVar("T")

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
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
        self._runtime: DockerRuntime | None = None
        self._engine: EngineFacts | None = None
        self._reconciler: DriverReconciler | None = None
        self._forwarder: LogForwarder | None = None
        self._keepalive: DiscoverKeepalive | None = None
        self._health: BootstrapHealthPublisher | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pass")
        # Backend and broker calls can hang for minutes (no answer, long
        # timeouts and retries); they run here so SIGTERM is answered at once.
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud")
        self._sync_due = 0.0
        self._pass: Future[PassResult] | None = None
        self._edge: dict[str, Any] | None = None
        self._registration = Backoff(settings.backoff_initial, settings.backoff_max)
        self._docker_backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._environment: EnvironmentConfig | None = None
        self._environment_error: str | None = None
        self._download_error: str | None = None
        self._backend_error: str | None = None
        self._phase = "starting"
        self._snapshot: Snapshot | None = None
        self._synced_environment: str | None = None
        self._last_result: PassResult | None = None
        self._linked: tuple[str, ...] = ()
        self._state_writer = StateWriter(state_path(settings.config_dir))
        self._watchdog_every = systemd.watchdog_interval()
        self._watchdog_at = float("-inf")

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
        if self._runtime is not None:
            return True
        if self._clock() < self._docker_backoff.due:
            return False
        try:
            runtime = DockerRuntime.connect()
        except RuntimeUnavailable as exc:
            delay = self._docker_backoff.failed(self._clock())
            log.warning("%s; retrying in %.1f s", exc, delay)
            return False
        self._docker_backoff.reset()
        self._runtime = runtime
        try:
            self._engine = runtime.engine_facts()
        except EdgeCoreError as exc:
            log.warning("could not read the Docker engine's facts: %s", exc)
        engine = self._engine
        if engine and engine.has_nvidia and engine.default_runtime != "nvidia":
            log.info(
                "the nvidia runtime is installed but not the default; "
                'to give drivers GPUs set "default-runtime": '
                '"nvidia" in /etc/docker/daemon.json and restart Docker'
            )
        self._forwarder = LogForwarder(
            runtime,
            self._mqtt.publish,
            version=__version__,
            cold_start_tail=self.settings.driver_log_tail,
            fingerprint=self.fingerprint,
        )
        self._reconciler = DriverReconciler(
            runtime,
            options=PassOptions(
                config_dir=self._config_dir,
                fingerprint=self.fingerprint,
                topic_prefix=self._prefix,
                version=__version__,
                profile_keys=tuple(profile_keys(self._facts)),
                parallelism=self.settings.driver_launch_parallelism,
                pull_stall_timeout=self.settings.pull_timeout,
                probe_timeout=self.settings.driver_startup_probe,
                probe_interval=self.settings.driver_probe_interval,
                remove_timeout=self.settings.driver_remove_timeout,
            ),
            publish=self._mqtt.publish,
            forwarder=self._forwarder,
        )
        return True

    def _backend_down(self, exc: EdgeCoreError) -> None:
        delay = self._registration.failed(self._clock())
        first = self._backend_error is None
        self._backend_error = str(exc)
        self._phase = "waiting_for_backend"
        if first:
            log.warning(
                "backend unavailable: %s; waiting for it, retrying in %.1f s",
                exc,
                delay,
            )
        else:
            log.info("backend still unavailable (%s); next try in %.1f s", exc, delay)
        self._write_state()

    def _try_register(self) -> bool:
        """Token check and registration; True once the edge is registered."""
        if self._edge is not None:
            return True
        if self._clock() < self._registration.due:
            return False
        try:
            if self._backend_error is not None:
                self._wait_for(self._cloud.check_token)
            self._edge = self._wait_for(
                lambda: register(self._cloud, self._config_dir, self.fingerprint)
            )
        except BackendUnavailable as exc:
            self._backend_down(exc)
            return False
        except PermanentError as exc:
            # A token rejected after boot is not fatal: drivers keep running
            # and a rotated token in credentials.json is picked up.
            self._backend_down(exc)
            return False
        if self._backend_error is not None:
            log.info("backend reachable again")
        self._backend_error = None
        self._registration.reset()
        self._phase = "running"
        self._start_keepalive()
        return True

    def _start_keepalive(self) -> None:
        if self._keepalive is not None:
            return
        hostname, _mac, plat = host_identity()
        self._keepalive = DiscoverKeepalive(
            self._cloud,
            fingerprint=self.fingerprint,
            hostname=hostname,
            platform=plat,
            host_facts=host_facts,
            interval=self.settings.discover_interval,
        )
        self._keepalive.start()

    # -- environment and driver passes ------------------------------------

    def _reload_environment(self) -> EnvironmentConfig | None:
        try:
            environment = load_environment(self._config_dir)
        except ConfigError as exc:
            if str(exc) != self._environment_error:
                log.warning(
                    "%s (read again every %.0f s)",
                    exc,
                    self.settings.reconcile_interval,
                )
            self._environment_error = str(exc)
            self._environment = None
            return None
        if self._environment_error is not None:
            log.info("%s is usable again", environment.path)
        self._environment_error = None
        self._environment = environment
        return environment

    def _start_from_snapshot(self) -> None:
        environment = self._reload_environment()
        snapshot = desired_state.load(self._config_dir)
        if environment is None or snapshot is None:
            return
        if snapshot.environment_uuid != environment.uuid:
            log.info(
                "persisted desired state is for environment %s, not %s; "
                "waiting for the backend",
                snapshot.environment_uuid,
                environment.uuid,
            )
            return
        log.info(
            "starting drivers from the desired state saved at %s",
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(snapshot.fetched_at)),
        )
        self._snapshot = snapshot
        self._submit_pass(snapshot, pull=False)

    def _fetch(self, environment: EnvironmentConfig) -> tuple[Snapshot, bool]:
        previous = self._snapshot.assets if self._snapshot else {}
        return download_environment(
            self._cloud, environment.uuid, self.fingerprint, previous
        )

    def _submit_pass(self, snapshot: Snapshot, *, pull: bool) -> None:
        if self._reconciler is None or self._pass is not None:
            return
        # The model's views drop duplicates and uuids unfit for a topic.
        self._linked = tuple(
            twin.uuid for twin in linked_twins(snapshot.twins, self.fingerprint)
        )
        self._ensure_health_publisher()
        reconciler = self._reconciler
        self._pass = self._pool.submit(
            reconciler.run_pass,
            twins=snapshot.twins,
            assets=snapshot.assets,
            ctx=driver_context(self.settings, self.credentials, self._facts),
            launch=launch_context(
                self.settings, self.fingerprint, self._facts, self._engine
            ),
            driver_overrides=self.credentials.driver_overrides,
            pull=pull,
        )
        self._pass.add_done_callback(lambda _f: self._wake.set())

    def _collect_pass(self) -> None:
        if self._pass is None or not self._pass.done():
            return
        future, self._pass = self._pass, None
        try:
            result = future.result()
        except RuntimeUnavailable as exc:
            log.warning("%s; the pass will run again", exc)
            self._runtime = None
            self._reconciler = None
            self._synced_environment = None
            return
        except Exception:
            log.exception("driver pass failed; it will run again next cycle")
            self._synced_environment = None
            # The done callback wakes the loop at once; a pass that fails the
            # same way every time must not run back to back.
            self._sync_due = self._clock() + self.settings.reconcile_interval
            return
        self._last_result = result
        running = sum(1 for d in result.drivers if d.outcome in ("running", "adopted"))
        failed = sum(1 for d in result.drivers if d.outcome == "failed")
        log.info(
            "driver pass done: %d driver container(s) running, %d driver(s) failed",
            running,
            failed,
        )
        if result.all_running and self._health is not None:
            self._health.stop()
            self._health = None

    def _ensure_health_publisher(self) -> None:
        if self._health is not None or not self._linked:
            return
        if self._last_result is not None and self._last_result.all_running:
            return
        self._health = BootstrapHealthPublisher(
            publish=self._mqtt.publish,
            topic_for=lambda twin: topics.edge_health(self._prefix, twin),
            fingerprint=self.fingerprint,
            twins=lambda: self._linked,
            interval=self.settings.health_publish_interval,
            metrics=self._metrics,
            watchdog_layers=("systemd",) if systemd.watchdog_interval() else (),
            battery_wh=self.settings.battery_wh,
        )
        self._health.start()

    def _sync_environment(self) -> None:
        """Download the environment and start a pass when it is due."""
        environment = self._environment
        if environment is None or self._edge is None or self._pass is not None:
            return
        if self._synced_environment == environment.uuid:
            return
        if self._clock() < self._sync_due:
            return
        try:
            snapshot, complete = self._wait_for(lambda: self._fetch(environment))
        except BackendUnavailable as exc:
            log.warning(
                "could not download environment %s: %s; retrying in %.0f s",
                environment.uuid,
                exc,
                self.settings.reconcile_interval,
            )
            return
        except PermanentError as exc:
            problem = f"{environment.path}: {exc}"
            if problem != self._download_error:
                log.error(
                    "could not download environment %s: %s; check the uuid in %s",
                    environment.uuid,
                    exc,
                    environment.path,
                )
            self._download_error = problem
            return
        self._download_error = None
        try:
            desired_state.save(self._config_dir, snapshot)
        except OSError as exc:
            log.warning("could not save the desired state: %s", exc)
        self._snapshot = snapshot
        if complete:
            self._synced_environment = environment.uuid
        else:
            self._sync_due = self._clock() + self.settings.reconcile_interval
        self._submit_pass(snapshot, pull=complete)

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
        if self._edge is None and self._registration.due:
            waits.append(max(0.1, self._registration.due - now))
        if self._runtime is None and self._docker_backoff.due:
            waits.append(max(0.1, self._docker_backoff.due - now))
        return min(waits)

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
        self._collect_pass()
        self._reload_environment()
        self._sync_environment()
        self._write_state()

    # -- state and shutdown ----------------------------------------------

    def _write_state(self) -> None:
        result = self._last_result
        state = DaemonState(
            pid=os.getpid(),
            version=__version__,
            started_at=self._started_at,
            updated_at=time.time(),
            phase=self._phase,
            fingerprint=self.fingerprint,
            edge_uuid=(self._edge or {}).get("uuid"),
            environment_uuid=self._environment.uuid if self._environment else None,
            backend_error=self._backend_error,
            environment_error=self._environment_error or self._download_error,
            mqtt_connected=self._mqtt.is_connected,
            settings_warnings=tuple(self.settings.warnings),
            drivers=result.drivers if result else (),
            orphans=result.orphans if result else (),
            linked_twins=self._linked,
            without_driver=dict(result.without_driver) if result else {},
        )
        self._state_writer.write(state)

    def _shutdown(self) -> None:
        log.info("stopping the edge core; driver containers keep running")
        # A rejected token stays the last word, so status can say why.
        if self._phase != "token_rejected":
            self._phase = "stopped"
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._calls.shutdown(wait=False, cancel_futures=True)
        for part in (self._health, self._keepalive, self._forwarder):
            if part is not None:
                part.stop()
        self._mqtt.stop()
        self._write_state()


def _install_signals(daemon: Daemon) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _fatal(message: str) -> int:
    sys.stderr.write(f"cyberwave-edge-core: {message}\n")
    return EXIT_FATAL


def prepare(environ: MutableMapping[str, str]) -> tuple[Settings, Credentials]:
    """Read the configuration the way the daemon does, raising ConfigError."""
    config_dir = resolve_config_dir(environ)
    migrate_legacy(config_dir)
    credentials = load_credentials(config_dir)
    apply_envs(credentials.envs, environ)
    settings = load_settings(environ, envs=credentials.envs, config_dir=config_dir)
    return settings, credentials


def run(environ: MutableMapping[str, str] | None = None) -> int:
    """Run the daemon in this process; returns the exit code."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if os.name == "posix":
        os.umask(0o077)
    redactor = configure_logging(env.get("CYBERWAVE_EDGE_LOG_LEVEL", "INFO"))
    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    try:
        settings, credentials = prepare(env)
    except ConfigError as exc:
        return _fatal(str(exc))
    redactor = configure_logging(settings.log_level)
    redactor.add_secret(credentials.token)
    if settings.mqtt_password:
        redactor.add_secret(settings.mqtt_password)
    for warning in settings.warnings:
        log.warning("%s", warning)
    try:
        owner = target_owner(settings.config_dir, env)
        ensure_layout(settings.config_dir, owner)
        if owner is not None:
            repair_ownership(settings.config_dir, owner)
        fingerprint = resolve_fingerprint(settings.config_dir, env, persist=True)
    except ConfigError as exc:
        return _fatal(str(exc))
    except OSError as exc:
        if debug:
            log.exception("cannot prepare %s", settings.config_dir)
        return _fatal(f"{settings.config_dir}: {format_exception_line(exc)}")
    daemon = Daemon(
        settings=settings,
        credentials=credentials,
        fingerprint=fingerprint,
        redactor=redactor,
    )
    _install_signals(daemon)
    try:
        return daemon.run()
    except Exception as exc:
        if debug or logging.getLogger().isEnabledFor(logging.DEBUG):
            log.exception("the edge core stopped on an unexpected error")
        else:
            log.error(
                "the edge core stopped on an unexpected error: %s (run with "
                "CYBERWAVE_EDGE_LOG_LEVEL=DEBUG for the traceback)",
                format_exception_line(exc),
            )
        return EXIT_FATAL
