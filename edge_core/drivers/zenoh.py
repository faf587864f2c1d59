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

The router is known by its labels (the fingerprint and the service label
``zenoh-router``), not only by its name: one a person renamed gets its
name back and is kept, and any other router of ours goes before a new one
starts, so two never run side by side on the host network. When a
container that is not ours holds the name, ours keeps running under the
name it was given, said once at WARNING. A router a person paused is left
as it is, like a paused driver.

With the setting off, ``ensure`` removes a router of ours left from an
earlier run. It never touches a container without this edge core's
fingerprint label.
"""

from __future__ import annotations

import enum
import errno
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from edge_core.config.settings import Settings
from edge_core.errors import ContainerError, EdgeCoreError
from edge_core.model.envlayer import zenoh_router_endpoint
from edge_core.model.names import ZENOH_ROUTER_PREFIX
from edge_core.model.spec import LABEL_SERVICE, ContainerSpec
from edge_core.model.zenoh import ROUTER_ROLE, RouterInputs, router_spec
from edge_core.runtime import (
    ContainerState,
    ContainerView,
    DockerRuntime,
    ForeignContainerError,
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
    PAUSED = "paused"
    FAILED = "failed"


@dataclass(frozen=True)
class RouterStatus:
    """The router after one ``ensure`` or ``restart``, for logs and status.

    ``name`` is the router container's name (another than the router's own
    only when ours cannot get its name back); ``endpoint`` is what drivers
    are given as ``ZENOH_CONNECT`` when no endpoints are configured;
    ``reason`` says why it failed; ``note`` what a person did to it that
    is left as it is (a pause, a name taken by another container).
    """

    name: str
    state: RouterState
    endpoint: str
    container_id: str | None = None
    reason: str = ""
    note: str = ""

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
        port_taken: Callable[[int], bool] | None = None,
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
        # On the host network the router cannot listen on a port another
        # program holds; published ports are refused by the engine itself.
        self._port_taken = port_taken or (
            tcp_port_taken if inputs.host_is_linux else lambda _port: False
        )
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

    @property
    def container_name(self) -> str:
        """The name the router container has now, as the latest outcome saw."""
        last = self._last
        return last.name if last is not None else self.name

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
                # Whatever its name now: a person may have renamed it.
                for view in self._routers():
                    self._runtime.remove(view.name, fingerprint=self._fingerprint)
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
        spec = router_spec(
            self._inputs, fingerprint=self._fingerprint, image_id=self._image_id()
        )
        try:
            current = self._runtime.inspect(spec.name, fingerprint=self._fingerprint)
        except ForeignContainerError as exc:
            return self._name_taken(spec, exc)
        if current is None:
            renamed = self._renamed(spec)
            if renamed is not None:
                try:
                    current = self._rename_back(renamed, spec.name)
                except EdgeCoreError as exc:
                    why = f"it could not be renamed back: {exc}"
                    return self._elsewhere(renamed, spec, why, str(exc))
        if current is not None:
            kept = self._keep(current, spec)
            if kept is not None:
                if not self._swept:
                    self._sweep(spec)
                return kept
            self._runtime.remove(spec.name, fingerprint=self._fingerprint)
        # Never a second router next to one of ours on the host network.
        self._sweep(spec)
        return self._launch(spec)

    def _routers(self, spec: ContainerSpec | None = None) -> list[ContainerView]:
        """Our routers, by their labels and whatever their names.

        A router created before it carried its service label is known by
        its name, or by the spec hash of ``spec`` under another name.
        """
        found: list[ContainerView] = []
        for view in self._runtime.list_managed(self._fingerprint):
            role = view.labels.get(LABEL_SERVICE)
            if role == ROUTER_ROLE:
                found.append(view)
            elif role is None and view.twin_uuid is None:
                named = view.name.startswith(ZENOH_ROUTER_PREFIX)
                if named or (spec is not None and view.spec_hash == spec.spec_hash):
                    found.append(view)
        return found

    def _sweep(self, spec: ContainerSpec) -> None:
        """Remove every router of ours but the one named as ``spec`` says:
        that of an environment this edge no longer serves, or a second one."""
        for view in self._routers(spec):
            if view.name != spec.name:
                log.info("removing %s: the Zenoh router is %s", view.name, spec.name)
                self._runtime.remove(view.name, fingerprint=self._fingerprint)
        self._swept = True

    def _renamed(self, spec: ContainerSpec) -> ContainerView | None:
        """Our router of ``spec`` under a name a person gave it (a running
        one first), if any."""
        found = [
            view
            for view in self._routers(spec)
            if view.name != spec.name and view.spec_hash == spec.spec_hash
        ]
        found.sort(key=lambda view: (not view.running, view.name))
        return found[0] if found else None

    def _rename_back(self, view: ContainerView, name: str) -> ContainerView:
        log.info(
            "container %s is the Zenoh router %s under another name; renaming it back",
            view.name,
            name,
        )
        self._runtime.rename(view.name, name, fingerprint=self._fingerprint)
        return replace(view, name=name)

    def _name_taken(
        self, spec: ContainerSpec, exc: ForeignContainerError
    ) -> RouterStatus:
        """A container that is not ours holds the name: it is left alone,
        and so is our router under another name; none is started."""
        renamed = self._renamed(spec)
        if renamed is None:
            return self._failed(str(exc))
        why = (
            "a container not managed by this edge core holds its name, so it is "
            "not renamed back; that container is left alone and no second "
            "router is started"
        )
        return self._elsewhere(renamed, spec, why, str(exc))

    def _elsewhere(
        self, view: ContainerView, spec: ContainerSpec, why: str, failure: str
    ) -> RouterStatus:
        """The status of our router kept under the name ``view`` has."""
        kept = self._keep(view, spec)
        if kept is None:
            return self._failed(failure)
        where = f"runs as {view.name}: {why}"
        return replace(kept, note=f"{kept.note}; it {where}" if kept.note else where)

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
                current.name,
                (current.spec_hash or "none")[:12],
                spec.spec_hash[:12],
            )
            return None
        name, found = current.name, current.id
        if current.running:
            return self._status(RouterState.ADOPTED, container_id=found, name=name)
        if current.state is ContainerState.RESTARTING:
            # Ours is not listening: a program holding the port stops it.
            if self._port_taken(self._inputs.port):
                return self._failed(self._port_reason())
            return self._status(RouterState.WAITING, container_id=found, name=name)
        if current.state is ContainerState.PAUSED:
            note = f"paused by hand; left alone until: docker unpause {name}"
            return self._status(
                RouterState.PAUSED, container_id=found, name=name, note=note
            )
        log.debug("recreating %s: it is %s", current.name, current.state.value)
        return None

    def _port_reason(self) -> str:
        port = self._inputs.port
        return (
            f"port {port} (ZENOH_ROUTER_PORT) is already in use on this host by "
            f"another program; stop that program or set ZENOH_ROUTER_PORT to a "
            f"free port"
        )

    def _launch(self, spec: ContainerSpec) -> RouterStatus:
        fingerprint = self._fingerprint
        if self._port_taken(self._inputs.port):
            return self._failed(self._port_reason())
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
        self,
        state: RouterState,
        *,
        container_id: str | None = None,
        reason: str = "",
        name: str | None = None,
        note: str = "",
    ) -> RouterStatus:
        return RouterStatus(
            name=name or self.name,
            state=state,
            endpoint=self._endpoint,
            container_id=container_id,
            reason=reason,
            note=note,
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
        """One line per change; the same failure or note again is DEBUG only."""
        last = self._last
        told = last is not None and last.note == status.note
        if status.name != self.name and not told:
            paused = "is " if status.state is RouterState.PAUSED else ""
            log.warning("Zenoh router %s %s%s", self.name, paused, status.note)
            return
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
        elif status.state is RouterState.PAUSED and (
            last is None or last.state is not RouterState.PAUSED
        ):
            log.info("Zenoh router %s is %s", status.name, status.note)
        else:
            log.debug("Zenoh router %s: %s", self.name, status.state.value)


def tcp_port_taken(port: int) -> bool:
    """Whether another program listens on TCP ``port`` of this host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
