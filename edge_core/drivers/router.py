"""The Zenoh router of the selected environment, on a thread of its own.

``RouterKeeper`` holds the one ``ZenohRouter`` of the environment the
drivers belong to (named after it, protocol.md 4.1) and runs its
``ensure`` and ``restart`` on its own thread: a pass waits for the router
only a few seconds, so the router starts before the drivers when its
image is at hand, and a stalled pull of it holds up neither the drivers
nor supervision. A router seen stopped, removed or renamed between passes
is seen to at once; one a person paused is left alone. The last outcome is
kept for ``status``.

It decides nothing about the router's container itself; ``zenoh`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout

from edge_core.config.settings import Settings
from edge_core.drivers.zenoh import RouterState, RouterStatus, ZenohRouter
from edge_core.runtime.container import ContainerState, ContainerView
from edge_core.runtime.docker import DockerRuntime

log = logging.getLogger(__name__)

WAIT_SECONDS = 10.0
"""How long a pass waits for the router before starting the drivers."""


class RouterKeeper:
    """The router of one environment at a time, kept on its own thread.

    ``version`` goes into the router's created-by label.
    """

    def __init__(self, *, fingerprint: str, version: str) -> None:
        self._fingerprint = fingerprint
        self._version = version
        self._router: ZenohRouter | None = None
        self._environment: str | None = None
        self._status: RouterStatus | None = None
        self._enabled = False
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router")
        self._job: Future[RouterStatus] | None = None

    @property
    def name(self) -> str | None:
        """The router's container name when it is enabled and known (the
        name a person gave it while it cannot get its own back)."""
        if self._router is None or not self._enabled:
            return None
        return self._router.container_name

    @property
    def error(self) -> str | None:
        """Why an enabled router does not run, if it does not."""
        status = self._status
        if status is None or status.ok or self.name is None:
            return None
        return status.reason or status.state.value

    @property
    def state(self) -> str | None:
        """What the last ``ensure`` found or did (``paused``, ``adopted`` …)."""
        status = self._status
        if status is None or self.name is None:
            return None
        return status.state.value

    @property
    def note(self) -> str | None:
        """What a person did to the enabled router that is left as it is."""
        status = self._status
        if status is None or not status.note or self.name is None:
            return None
        return status.note

    def ensure(
        self, runtime: DockerRuntime, settings: Settings, environment_uuid: str
    ) -> None:
        """Make the router run (or be gone when disabled) before a pass."""
        router = self._router_for(runtime, settings, environment_uuid)
        self._wait(self._submit(router.ensure))

    def restart(
        self, runtime: DockerRuntime, settings: Settings, environment_uuid: str
    ) -> None:
        """Remove the router and start it again from ``settings`` (a restart)."""
        self._router = None
        router = self._router_for(runtime, settings, environment_uuid)
        # Queued behind a job in flight, never folded into it.
        self._wait(self._submit(router.restart, queue=True))

    def watch(self, views: Sequence[ContainerView]) -> None:
        """See to a router that stopped (killed, removed) or was renamed at
        once, and to one paused or unpaused since the last look (the router
        is left as it is then; its status changes)."""
        router = self._router
        if router is None or not self._enabled:
            return
        last = router.last_status
        told = last.state if last is not None else None
        name = router.container_name
        for view in views:
            if view.name != name:
                continue
            if view.running and told in (RouterState.STARTED, RouterState.ADOPTED):
                return
            if view.state is ContainerState.PAUSED and told is RouterState.PAUSED:
                return
        self._submit(router.ensure)

    def forget(self) -> None:
        """The engine went away: the next pass makes the router anew."""
        self._router = None

    def close(self) -> None:
        """Abandon a router job in flight; the process does not wait for it."""
        self._calls.shutdown(wait=False, cancel_futures=True)

    def _router_for(
        self, runtime: DockerRuntime, settings: Settings, environment_uuid: str
    ) -> ZenohRouter:
        # It exists even when disabled: ensure() then removes a router of
        # ours left from when the setting was on.
        self._enabled = settings.zenoh_router_enabled
        if self._router is None or self._environment != environment_uuid:
            self._router = ZenohRouter.create(
                runtime,
                settings,
                fingerprint=self._fingerprint,
                environment_uuid=environment_uuid,
                version=self._version,
            )
            self._environment = environment_uuid
        return self._router

    def _submit(
        self, job: Callable[[], RouterStatus], *, queue: bool = False
    ) -> Future[RouterStatus] | None:
        """Start ``job`` on the router thread unless one runs (unless
        ``queue``); the future to wait for."""
        running = self._job
        if not queue and running is not None and not running.done():
            return running
        try:
            future = self._calls.submit(job)
        except RuntimeError:
            return None  # shutting down
        future.add_done_callback(self._done)
        self._job = future
        return future

    def _done(self, finished: Future[RouterStatus]) -> None:
        if not finished.cancelled() and finished.exception() is None:
            self._status = finished.result()

    def _wait(self, future: Future[RouterStatus] | None) -> None:
        if future is None:
            return
        try:
            future.result(timeout=WAIT_SECONDS)
        except FuturesTimeout:
            log.info("the Zenoh router is not up yet; starting the drivers meanwhile")
