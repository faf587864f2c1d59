"""Keep the optional Zenoh router container running, or out of the way.

With ``ZENOH_ROUTER_ENABLED`` the daemon calls ``ZenohRouter.ensure()``
before each driver pass and ``restart()`` during ``restart_edge_core``
(protocol.md 2.6 step 10). ``ensure`` adopts a running router of ours
whose spec hash matches, and otherwise removes the stale one and creates,
starts and probes a new one (4.10, 7b item 16). A router that cannot run
(its image is missing, a foreign container holds the name, the engine
refuses it) is reported in one line and in the returned status; it never
raises and never holds up the drivers, which then use peer-to-peer
discovery or whatever ``ZENOH_CONNECT`` says.

After a failure ``ensure`` returns the same failed status without trying
again until a capped, doubling delay has passed (``retry_initial`` to
``retry_max``), so a missing image is not pulled again before every pass;
``restart`` always tries at once.

With the setting off, ``ensure`` removes a router of ours left from an
earlier run. It never touches a container without this edge core's
fingerprint label.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_core.config.settings import Settings
from edge_core.errors import ContainerError, EdgeCoreError
from edge_core.model.envlayer import zenoh_router_endpoint
from edge_core.model.names import ZENOH_ROUTER_PREFIX
from edge_core.model.spec import ContainerSpec
from edge_core.model.zenoh import RouterInputs, router_spec
from edge_core.runtime import (
    ContainerState,
    ContainerView,
    DockerRuntime,
    PullEvent,
    PullFailed,
)

log = logging.getLogger(__name__)


class RouterState(enum.Enum):
    """What ``ensure`` found or did."""

    DISABLED = "disabled"
    STARTED = "started"
    ADOPTED = "adopted"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True)
class RouterStatus:
    """The router after one ``ensure`` or ``restart``, for logs and status.

    ``endpoint`` is what drivers are given as ``ZENOH_CONNECT`` when no
    endpoints are configured; ``reason`` says why it failed.
    """

    name: str
    state: RouterState
    endpoint: str
    container_id: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """False only when the router should run and does not."""
        return self.state is not RouterState.FAILED


class ZenohRouter:
    """The one Zenoh router container of this edge core."""

    def __init__(
        self,
        runtime: DockerRuntime,
        *,
        inputs: RouterInputs,
        fingerprint: str,
        enabled: bool = True,
        probe_timeout: float = 120.0,
        probe_interval: float = 1.0,
        pull_stall_timeout: float = 600.0,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._inputs = inputs
        self._fingerprint = fingerprint
        self._enabled = enabled
        self._probe_timeout = probe_timeout
        self._probe_interval = probe_interval
        self._pull_stall_timeout = pull_stall_timeout
        self._lock = threading.RLock()
        self._swept = False
        self._last: RouterStatus | None = None
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._clock = clock
        self._failures = 0
        self._retry_at = 0.0
        host_platform = "linux" if inputs.host_is_linux else "darwin"
        self._endpoint = zenoh_router_endpoint(inputs.port, host_platform)

    @classmethod
    def create(
        cls,
        runtime: DockerRuntime,
        settings: Settings,
        *,
        fingerprint: str,
        environment_uuid: str | None,
        version: str,
        host_is_linux: bool | None = None,
    ) -> ZenohRouter:
        """The router as ``settings`` describe it (``ZENOH_ROUTER_*``)."""
        linux = (
            sys.platform.startswith("linux") if host_is_linux is None else host_is_linux
        )
        inputs = RouterInputs(
            image=settings.zenoh_router_image,
            port=settings.zenoh_router_port,
            environment_uuid=environment_uuid,
            host_is_linux=linux,
            log_max_size=settings.docker_log_max_size,
            log_max_file=settings.docker_log_max_file,
            version=version,
        )
        return cls(
            runtime,
            inputs=inputs,
            fingerprint=fingerprint,
            enabled=settings.zenoh_router_enabled,
            probe_timeout=settings.driver_startup_probe,
            probe_interval=settings.driver_probe_interval,
            pull_stall_timeout=settings.pull_timeout,
            retry_initial=settings.backoff_initial,
            retry_max=settings.backoff_max,
        )

    @property
    def name(self) -> str:
        """``cyberwave-zenoh-router-<env8>`` (protocol.md 4.1)."""
        return self._inputs.name

    @property
    def endpoint(self) -> str:
        """Where drivers reach the router, e.g. ``tcp/127.0.0.1:7447``."""
        return self._endpoint

    @property
    def last_status(self) -> RouterStatus | None:
        """The outcome of the latest ``ensure`` or ``restart``, if any."""
        return self._last

    def ensure(self) -> RouterStatus:
        """Make the router run when enabled, or be gone when not.

        Never raises: a failure is logged once per distinct reason and
        returned as a ``FAILED`` status, which is returned again without
        a new attempt until the retry delay has passed.
        """
        with self._lock:
            last = self._last
            waiting = self._clock() < self._retry_at
            if last is not None and last.state is RouterState.FAILED and waiting:
                log.debug("%s: not trying again yet: %s", self.name, last.reason)
                return last
            return self._settle(self._ensure_safely())

    def restart(self) -> RouterStatus:
        """Remove the router and start it again if enabled."""
        with self._lock:
            self._failures, self._retry_at = 0, 0.0
            try:
                self._runtime.remove(self.name, fingerprint=self._fingerprint)
            except EdgeCoreError as exc:
                reason = f"could not remove it for the restart: {exc}"
                return self._settle(self._failed(reason))
            self._swept = False
            return self.ensure()

    # -- one ensure -------------------------------------------------------

    def _ensure_safely(self) -> RouterStatus:
        # The router is optional: whatever goes wrong with it must not stop
        # the driver pass that follows, so even an unexpected error ends here.
        try:
            if not self._enabled:
                return self._disable()
            return self._converge()
        except EdgeCoreError as exc:
            return self._failed(str(exc))
        except Exception as exc:
            log.exception("unexpected error while ensuring %s", self.name)
            return self._failed(f"unexpected error: {exc}")

    def _disable(self) -> RouterStatus:
        """Remove every router of ours: the setting is off."""
        if not self._swept:
            for view in self._routers():
                log.info("removing %s: ZENOH_ROUTER_ENABLED is off", view.name)
                self._runtime.remove(view.name, fingerprint=self._fingerprint)
            self._swept = True
        return self._status(RouterState.DISABLED)

    def _converge(self) -> RouterStatus:
        # A router of ours under another name belongs to an environment this
        # edge no longer serves; once per start is enough to find it.
        if not self._swept:
            for view in self._routers():
                if view.name != self.name:
                    log.debug("%s belongs to another environment", view.name)
                    self._runtime.remove(view.name, fingerprint=self._fingerprint)
            self._swept = True

        spec = router_spec(
            self._inputs, fingerprint=self._fingerprint, image_id=self._image_id()
        )
        current = self._runtime.inspect(spec.name, fingerprint=self._fingerprint)
        if current is not None:
            kept = self._keep(current, spec)
            if kept is not None:
                return kept
            self._runtime.remove(spec.name, fingerprint=self._fingerprint)
        return self._launch(spec)

    def _routers(self) -> list[ContainerView]:
        views = self._runtime.list_managed(self._fingerprint)
        return [v for v in views if v.name.startswith(ZENOH_ROUTER_PREFIX)]

    def _image_id(self) -> str:
        """The local id of the router image, pulled only when missing."""
        image = self._inputs.image
        try:
            ensured = self._runtime.ensure_image(
                image,
                on_progress=self._pull_progress,
                stall_timeout=self._pull_stall_timeout,
                always_pull=False,
            )
        except ContainerError as exc:
            cause = exc.__cause__
            why = cause.reason if isinstance(cause, PullFailed) else str(cause or exc)
            raise ContainerError(
                f"its image {image} (ZENOH_ROUTER_IMAGE) is not on this host "
                f"and could not be pulled: {why}; make its registry reachable, "
                f"load it with docker load, or set ZENOH_ROUTER_IMAGE to a "
                f"local image",
                phase=exc.phase,
            ) from exc
        return ensured.image_id

    def _pull_progress(self, event: PullEvent) -> None:
        log.debug("pulling %s for %s: %s", event.image, self.name, event.raw_line)

    def _keep(self, current: ContainerView, spec: ContainerSpec) -> RouterStatus | None:
        """The status of a router left as it is, or None to recreate it."""
        if current.spec_hash != spec.spec_hash:
            log.debug(
                "recreating %s: spec changed (%s -> %s)",
                spec.name,
                (current.spec_hash or "none")[:12],
                spec.spec_hash[:12],
            )
            return None
        if current.running:
            return self._status(RouterState.ADOPTED, container_id=current.id)
        if current.state is ContainerState.RESTARTING:
            return self._status(RouterState.WAITING, container_id=current.id)
        log.debug("recreating %s: it is %s", spec.name, current.state.value)
        return None

    def _launch(self, spec: ContainerSpec) -> RouterStatus:
        fingerprint = self._fingerprint
        view = self._runtime.create(spec, fingerprint=fingerprint)
        self._runtime.start(spec.name, fingerprint=fingerprint)
        result = self._runtime.probe(
            spec.name,
            fingerprint=fingerprint,
            timeout=self._probe_timeout,
            interval=self._probe_interval,
        )
        if result.ok:
            return self._status(RouterState.STARTED, container_id=view.id)
        try:
            self._runtime.remove(spec.name, fingerprint=fingerprint)
        except EdgeCoreError as exc:
            log.debug("could not remove the failed %s: %s", spec.name, exc)
        return self._failed(f"it did not reach running: {result.detail}")

    # -- outcomes ---------------------------------------------------------

    def _status(
        self, state: RouterState, *, container_id: str | None = None, reason: str = ""
    ) -> RouterStatus:
        return RouterStatus(
            name=self.name,
            state=state,
            endpoint=self._endpoint,
            container_id=container_id,
            reason=reason,
        )

    def _failed(self, reason: str) -> RouterStatus:
        return self._status(RouterState.FAILED, reason=reason)

    def _settle(self, status: RouterStatus) -> RouterStatus:
        """Report ``status``, remember it and set when to try again."""
        if status.state is RouterState.FAILED:
            delay = min(self._retry_max, self._retry_initial * 2.0**self._failures)
            self._failures = min(self._failures + 1, 32)
            self._retry_at = self._clock() + delay
        else:
            self._failures, self._retry_at = 0, 0.0
        self._report(status)
        self._last = status
        return status

    def _report(self, status: RouterStatus) -> None:
        """One line per change; the same failure again is DEBUG only."""
        last = self._last
        if status.state is RouterState.FAILED:
            if last is not None and last.reason == status.reason:
                log.debug("%s still not running: %s", self.name, status.reason)
                return
            log.error(
                "Zenoh router %s is not running: %s; drivers start without it",
                self.name,
                status.reason,
            )
            return
        if status.state is RouterState.STARTED:
            log.info("Zenoh router %s is running at %s", self.name, self._endpoint)
        elif status.state is RouterState.ADOPTED and (
            last is None or last.container_id != status.container_id
        ):
            log.info("adopted running Zenoh router %s", self.name)
        else:
            log.debug("Zenoh router %s: %s", self.name, status.state.value)
