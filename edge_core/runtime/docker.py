"""The Docker adapter: every engine operation the edge core performs.

``DockerRuntime`` wraps one docker SDK client. It only ever inspects,
stops, starts or removes containers that carry this edge core's
fingerprint label (protocol.md 7b item 16); a container of the wanted name
that belongs to anyone else raises ``ForeignContainerError`` and is left
alone. Every call acts on the container id it just verified, not on the
name, so a container swapped in between is never touched.

It does not decide which containers should exist, in what order they
start, or when images are pulled again: those are the drivers' and the
worker's decisions. It never prunes images (7b item 17).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import docker
from docker.errors import DockerException, NotFound
from docker.types.daemon import CancellableStream
from requests.exceptions import RequestException

from edge_core.errors import ContainerError, DriverSpecError
from edge_core.model.spec import LABEL_FINGERPRINT, LABEL_MIN_RESTART, ContainerSpec
from edge_core.runtime import images
from edge_core.runtime import probe as probing
from edge_core.runtime.container import ContainerState, ContainerView
from edge_core.runtime.errors import (
    ForeignContainerError,
    engine_unavailable,
    translate_errors,
)
from edge_core.runtime.flag_values import restart_policy
from edge_core.runtime.images import EnsuredImage, PullEvent, PullFailed, is_local_tag
from edge_core.runtime.logs import LogStream
from edge_core.runtime.probe import ProbeResult
from edge_core.runtime.translate import create_args

log = logging.getLogger(__name__)

_STOPPED = (ContainerState.EXITED, ContainerState.DEAD)


@dataclass(frozen=True)
class EngineFacts:
    """What the engine says about itself (``docker info``)."""

    server_version: str
    runtimes: tuple[str, ...]
    default_runtime: str
    data_root: str

    @property
    def has_nvidia(self) -> bool:
        """True when the engine offers the ``nvidia`` runtime."""
        return "nvidia" in self.runtimes


def _require(fingerprint: str) -> str:
    if not fingerprint or not fingerprint.strip():
        raise ValueError("a non-empty fingerprint is required to select containers")
    return fingerprint


class DockerRuntime:
    """Container and image operations over one docker SDK client."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self._api: docker.APIClient = client.api

    @classmethod
    def connect(cls, base_url: str | None = None, timeout: float = 60) -> DockerRuntime:
        """Connect to the engine at ``base_url`` (default: the environment).

        Raises ``RuntimeUnavailable`` naming the fix when it does not answer.
        """
        where = base_url or "the default socket"
        try:
            if base_url:
                client = docker.DockerClient(base_url=base_url, timeout=timeout)
            else:
                client = docker.from_env(timeout=timeout)
            client.ping()
        except (DockerException, RequestException, OSError) as exc:
            raise engine_unavailable(exc, where=where) from exc
        return cls(client)

    def close(self) -> None:
        """Release the client's connections."""
        self._client.close()

    # -- engine and images ----------------------------------------------

    def engine_facts(self) -> EngineFacts:
        """Server version, runtimes, default runtime and data root."""
        with translate_errors("read Docker engine information", phase="docker_error"):
            info: Mapping[str, Any] = self._api.info()
        runtimes = info.get("Runtimes")
        return EngineFacts(
            server_version=str(info.get("ServerVersion", "")),
            runtimes=tuple(sorted(runtimes)) if isinstance(runtimes, Mapping) else (),
            default_runtime=str(info.get("DefaultRuntime", "")),
            data_root=str(info.get("DockerRootDir", "")),
        )

    def image_id(self, ref: str) -> str | None:
        """The local id (``sha256:…``) of image ``ref``, or None when absent."""
        with translate_errors(f"inspect image {ref}", phase="docker_error"):
            try:
                attrs: Mapping[str, Any] = self._api.inspect_image(ref)
            except NotFound:
                return None
        return str(attrs.get("Id")) or None

    def pull(
        self,
        ref: str,
        *,
        on_progress: Callable[[PullEvent], None],
        stall_timeout: float,
        auth_config: Mapping[str, str] | None = None,
    ) -> str:
        """Pull ``ref`` and return its local image id.

        See ``edge_core.runtime.images.pull`` for progress, the stall
        watchdog, the anonymous retry and the errors raised.
        """
        started = time.monotonic()
        images.pull(
            self._api,
            ref,
            on_progress=on_progress,
            stall_timeout=stall_timeout,
            auth_config=auth_config,
        )
        image_id = self.image_id(ref)
        if image_id is None:
            raise ContainerError(
                f"pull of image {ref} finished but the engine does not list it; "
                f"it will be tried again",
                phase="pull_failed",
            )
        log.info("pulled image %s in %.1f s", ref, time.monotonic() - started)
        return image_id

    def ensure_image(
        self,
        ref: str,
        *,
        on_progress: Callable[[PullEvent], None],
        stall_timeout: float,
        always_pull: bool,
    ) -> EnsuredImage:
        """Make ``ref`` available locally, pulling when the policy says so.

        A local copy is used without pulling when the tag is ``local``,
        ``local-*`` or ``*-local``, or when ``always_pull`` is False. A
        failed pull falls back to the local copy with a warning. Raises
        ``ContainerError(phase="image_missing")`` when there is neither.
        """
        local_id = self.image_id(ref)
        if local_id is not None and (is_local_tag(ref) or not always_pull):
            log.debug("using local image %s (%s) without pulling", ref, local_id[:19])
            return EnsuredImage(local_id, pulled=False, used_local=True)

        try:
            image_id = self.pull(
                ref, on_progress=on_progress, stall_timeout=stall_timeout
            )
        except ContainerError as exc:
            if local_id is None:
                raise ContainerError(
                    f"image {ref} is not on this host and could not be pulled "
                    f"({exc}); check the image name and that its registry is "
                    f"reachable, or load the image with docker load",
                    phase="image_missing",
                ) from exc
            reason = exc.reason if isinstance(exc, PullFailed) else str(exc)
            warning = (
                f"could not pull image {ref} ({reason}); "
                f"using the local copy {local_id[:19]}"
            )
            log.warning("%s", warning)
            return EnsuredImage(
                local_id,
                pulled=False,
                used_local=True,
                warning=warning,
                pull_error_phase=exc.phase,
            )
        return EnsuredImage(image_id, pulled=True, used_local=False)

    # -- reading containers ---------------------------------------------

    def _inspect_any(self, name: str) -> ContainerView | None:
        with translate_errors(f"inspect container {name}", phase="docker_error"):
            try:
                attrs: Mapping[str, Any] = self._api.inspect_container(name)
            except NotFound:
                return None
        return ContainerView.from_inspect(attrs)

    def inspect(self, name: str, *, fingerprint: str) -> ContainerView | None:
        """The container named ``name``, or None when there is none.

        Raises ``ForeignContainerError`` when it exists without our label.
        """
        _require(fingerprint)
        view = self._inspect_any(name)
        if view is None:
            return None
        if not view.belongs_to(fingerprint):
            raise ForeignContainerError(name, view.fingerprint, fingerprint)
        return view

    def list_managed(self, fingerprint: str) -> list[ContainerView]:
        """Every container (any state) carrying our fingerprint label, by name."""
        label = f"{LABEL_FINGERPRINT}={_require(fingerprint)}"
        with translate_errors("list containers", phase="docker_error"):
            summaries: Sequence[Mapping[str, Any]] = self._api.containers(
                all=True, filters={"label": label}
            )
        views: list[ContainerView] = []
        for summary in summaries:
            view = self._inspect_any(str(summary.get("Id", "")))
            if view is not None and view.belongs_to(fingerprint):
                views.append(view)
        return sorted(views, key=lambda v: v.name)

    def container_events(self, fingerprint: str) -> Any:
        """A closable, blocking stream of engine events about our containers."""
        label = f"{LABEL_FINGERPRINT}={_require(fingerprint)}"
        with translate_errors("follow Docker events", phase="docker_error"):
            return self._api.events(
                filters={"type": "container", "label": label}, decode=True
            )

    def _owned(self, name: str, fingerprint: str, *, phase: str) -> ContainerView:
        view = self.inspect(name, fingerprint=fingerprint)
        if view is None:
            raise ContainerError(f"container {name} does not exist", phase=phase)
        return view

    # -- changing containers --------------------------------------------

    def create(self, spec: ContainerSpec, *, fingerprint: str) -> ContainerView:
        """Create (not start) the container of ``spec``, labelled as ours."""
        _require(fingerprint)
        labelled = spec.labels.get(LABEL_FINGERPRINT)
        if labelled not in (None, fingerprint):
            raise DriverSpecError(
                f"container {spec.name}: spec is labelled for fingerprint "
                f"{labelled!r} but this edge core is {fingerprint!r}"
            )
        spec = replace(spec, labels={**spec.labels, LABEL_FINGERPRINT: fingerprint})
        args = create_args(spec)

        existing = self.inspect(spec.name, fingerprint=fingerprint)
        if existing is not None:
            raise ContainerError(
                f"container {spec.name} already exists ({existing.state.value}); "
                f"remove it before creating it again",
                phase="docker_create_failed",
            )

        action = f"create container {spec.name} from {spec.image}"
        privileged = bool(args.host_config.get("privileged"))
        with translate_errors(
            action,
            phase="docker_create_failed",
            timeout_phase="docker_create_timeout",
            privileged=privileged,
        ):
            host_config = self._api.create_host_config(**args.host_config)
            created = self._api.create_container(
                host_config=host_config, **args.container
            )
        log.info("created container %s from %s", spec.name, spec.image)
        view = self._inspect_any(str(created.get("Id", spec.name)))
        if view is None:
            raise ContainerError(
                f"container {spec.name} vanished right after it was created; "
                f"it will be created again",
                phase="docker_create_failed",
            )
        return view

    def start(self, name: str, *, fingerprint: str) -> None:
        """Start our container ``name`` (returns once the engine accepted it)."""
        view = self._owned(name, fingerprint, phase="docker_start_failed")
        with translate_errors(
            f"start container {name}",
            phase="docker_start_failed",
            privileged=view.privileged,
        ):
            self._api.start(view.id)
        log.info("started container %s", name)

    def stop(self, name: str, *, fingerprint: str, timeout: float = 10) -> bool:
        """Stop our container ``name``; False when it does not exist."""
        view = self.inspect(name, fingerprint=fingerprint)
        if view is None:
            return False
        with translate_errors(f"stop container {name}", phase="docker_error"):
            try:
                self._api.stop(view.id, timeout=math.ceil(timeout))
            except NotFound:
                return False
        log.info("stopped container %s", name)
        return True

    def rename(self, name: str, new_name: str, *, fingerprint: str) -> None:
        """Give our container ``name`` the name ``new_name``."""
        view = self._owned(name, fingerprint, phase="docker_error")
        with translate_errors(f"rename container {name}", phase="docker_error"):
            self._api.rename(view.id, new_name)
        log.info("renamed container %s to %s", name, new_name)

    def restart(self, name: str, *, fingerprint: str, timeout: float = 10) -> bool:
        """Restart our container ``name`` (its bind mounts are made anew);
        False when it does not exist."""
        view = self.inspect(name, fingerprint=fingerprint)
        if view is None:
            return False
        with translate_errors(
            f"restart container {name}",
            phase="docker_start_failed",
            privileged=view.privileged,
        ):
            try:
                self._api.restart(view.id, timeout=math.ceil(timeout))
            except NotFound:
                return False
        log.info("restarted container %s", name)
        return True

    def remove(
        self,
        name: str,
        *,
        fingerprint: str,
        force: bool = True,
        volumes: bool = True,
    ) -> bool:
        """Remove our container ``name``; False when it does not exist."""
        view = self.inspect(name, fingerprint=fingerprint)
        if view is None:
            return False
        with translate_errors(
            f"remove container {name}", phase="container_remove_failed"
        ):
            try:
                self._api.remove_container(view.id, v=volumes, force=force)
            except NotFound:
                return False
        log.info("removed container %s", name)
        return True

    def update_restart_policy(
        self, name: str, policy: str, *, fingerprint: str
    ) -> None:
        """Change our container's restart policy (``no``, ``on-failure:3`` …)."""
        parsed = restart_policy(policy)
        view = self._owned(name, fingerprint, phase="docker_error")
        with translate_errors(
            f"update restart policy of container {name}", phase="docker_error"
        ):
            self._api.update_container(view.id, restart_policy=parsed)
        log.info("set restart policy of container %s to %s", name, policy)

    def prune_stopped(
        self,
        fingerprint: str,
        *,
        keep_labels: Collection[str] = (LABEL_MIN_RESTART,),
        keep_names: Collection[str] = (),
    ) -> list[str]:
        """Remove our exited or dead containers; return their names.

        Containers carrying any of ``keep_labels`` (by default the restart
        floor of protocol.md 4.11) or named in ``keep_names`` stay. Images
        are never removed.
        """
        removed: list[str] = []
        for view in self.list_managed(fingerprint):
            if view.state not in _STOPPED or view.name in keep_names:
                continue
            if any(label in view.labels for label in keep_labels):
                continue
            if self.remove(view.name, fingerprint=fingerprint):
                removed.append(view.name)
        return removed

    # -- waiting and watching -------------------------------------------

    def wait_for_state(
        self,
        name: str,
        *,
        fingerprint: str,
        states: Collection[ContainerState],
        timeout: float,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ContainerView | None:
        """Poll until our container is in one of ``states``.

        Returns the view that matched, or None when time ran out or the
        container does not exist.
        """
        deadline = clock() + timeout
        while True:
            view = self.inspect(name, fingerprint=fingerprint)
            if view is None:
                return None
            if view.state in states:
                return view
            now = clock()
            if now >= deadline:
                return None
            sleep(max(0.0, min(interval, deadline - now)))

    def probe(
        self,
        name: str,
        *,
        fingerprint: str,
        timeout: float,
        interval: float = 1.0,
        created_retry_timeout: float = 30.0,
        log_tail: int = 20,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ProbeResult:
        """Wait for a started container to come up (protocol.md 4.5 step 5)."""
        _require(fingerprint)

        def tail() -> list[str]:
            stream = self.logs(
                name, follow=False, tail=log_tail, fingerprint=fingerprint
            )
            return [line.decode("utf-8", errors="replace") for line in stream]

        return probing.probe(
            name,
            inspect=lambda: self.inspect(name, fingerprint=fingerprint),
            start=lambda: self.start(name, fingerprint=fingerprint),
            tail=tail,
            timeout=timeout,
            interval=interval,
            created_retry_timeout=created_retry_timeout,
            clock=clock,
            sleep=sleep,
        )

    def logs(
        self,
        name: str,
        *,
        follow: bool,
        since: datetime | None = None,
        tail: int | None = None,
        stop_event: threading.Event | None = None,
        fingerprint: str | None = None,
    ) -> LogStream:
        """Complete output lines of container ``name`` (stdout and stderr).

        ``since`` returns only lines logged after that moment (pass a
        previous stream's ``last_timestamp`` to resume without duplicates);
        ``tail`` limits the backlog (None: all). With ``follow`` the stream
        ends when the container stops or ``stop_event`` is set. With
        ``fingerprint`` a foreign container is refused.
        """
        if fingerprint is not None:
            view = self.inspect(name, fingerprint=fingerprint)
        else:
            view = self._inspect_any(name)
        if view is None:
            raise ContainerError(
                f"container {name} does not exist; no logs to read",
                phase="docker_error",
            )
        since_seconds = math.floor(since.timestamp()) if since is not None else None
        after = since_seconds if since_seconds and since_seconds > 0 else None
        backlog = "all" if tail is None else tail
        action = f"read logs of container {name}"
        chunks: Iterable[bytes]
        with translate_errors(action, phase="docker_error"):
            if view.tty:
                chunks, close = self._tty_log_chunks(
                    view.id, follow=follow, tail=backlog, since=after
                )
            else:
                stream = self._api.logs(
                    view.id,
                    stream=True,
                    follow=follow,
                    timestamps=True,
                    tail=backlog,
                    since=after,
                )
                chunks, close = stream, stream.close
        return LogStream(
            _translated(chunks, action),
            close=close,
            tty=view.tty,
            since=since,
            stop_event=stop_event,
            container_id=view.id,
        )

    def _tty_log_chunks(
        self, container_id: str, *, follow: bool, tail: int | str, since: int | None
    ) -> tuple[Iterator[bytes], Callable[[], None]]:
        """The raw log of a TTY container as the engine sends it.

        The docker SDK hands such a stream out one byte at a time, which
        costs a core for a chatty driver; the engine's own chunks (one per
        log message while following) are read here instead.
        """
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "follow": 1 if follow else 0,
            "timestamps": 1,
            "tail": tail,
        }
        if since is not None:
            params["since"] = since
        api: Any = self._api
        url = api._url("/containers/{0}/logs", container_id)
        response = api._get(url, params=params, stream=True)
        api._raise_for_status(response)
        # As the SDK does for a stream: a quiet driver must not time it out.
        api._disable_socket_timeout(api._get_raw_response_socket(response))
        # The SDK's wrapper: its close shuts the socket, ending a blocked read.
        stream = CancellableStream(response.iter_content(chunk_size=None), response)
        return stream, stream.close


def _translated(chunks: Iterable[bytes], action: str) -> Iterator[bytes]:
    """``chunks`` with read errors turned into the project's errors."""
    with translate_errors(action, phase="docker_error"):
        yield from chunks
