"""One driver pass: from the environment's twins to running containers.

A pass writes the twin files, makes sure every driver image is present
(pulling in parallel, at most ``parallelism`` at once), builds the frozen
container specs, plans against the containers carrying this edge's
fingerprint label, and carries out the launches with the same bounded
parallelism. One twin's failure never stops the others: it becomes a
failed outcome with a reason a person can act on.

It does not fetch anything from the cloud; the caller hands it the twins
and assets (fresh from the backend or from the persisted snapshot).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_core.cloud import topics
from edge_core.drivers.logs import FollowTarget, LogForwarder, Publish
from edge_core.drivers.planner import Launch, Plan, plan
from edge_core.drivers.pulls import PullReporter, PullTarget
from edge_core.errors import ContainerError, DriverSpecError, EdgeCoreError
from edge_core.model.desired import (
    DriverContext,
    LaunchContext,
    build_driver_specs,
)
from edge_core.model.spec import ContainerSpec
from edge_core.runtime.docker import DockerRuntime
from edge_core.runtime.errors import ForeignContainerError
from edge_core.state import DriverStatus
from edge_core.twins.files import twin_path, write_twin_file

log = logging.getLogger(__name__)

# The phase of a twin whose driver metadata cannot become a container.
SPEC_FAILURE_PHASE = "driver_spec"


@dataclass(frozen=True)
class PassOptions:
    """The knobs of a pass, taken from Settings by the daemon."""

    config_dir: Path
    fingerprint: str
    topic_prefix: str
    version: str
    profile_keys: tuple[str, ...]
    parallelism: int = 4
    pull_stall_timeout: float = 600.0
    probe_timeout: float = 120.0
    probe_interval: float = 1.0
    remove_timeout: float = 60.0


@dataclass(frozen=True)
class ImageReady:
    """An image made present: the ids to hash with, or why it is missing."""

    image_ids: Mapping[str, str | None]
    substitutes: Mapping[str, str]
    error: ContainerError | None


@dataclass(frozen=True)
class PassResult:
    """What one pass found and did, per driver container."""

    linked: tuple[str, ...]
    drivers: tuple[DriverStatus, ...]
    orphans: tuple[str, ...]
    without_driver: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_running(self) -> bool:
        """Every driver container of a linked twin runs (adopted or started).

        A twin whose metadata cannot become a container has none to wait
        for: nothing changes for it until someone edits the metadata, and
        waiting would keep the bootstrap health duplicating the running
        drivers' own health.
        """
        containers = [d for d in self.drivers if d.phase != SPEC_FAILURE_PHASE]
        return bool(containers) and all(
            d.outcome in ("running", "adopted") for d in containers
        )


class DriverReconciler:
    """Carries out driver passes against one Docker engine."""

    def __init__(
        self,
        runtime: DockerRuntime,
        *,
        options: PassOptions,
        publish: Publish,
        forwarder: LogForwarder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._options = options
        self._publish = publish
        self._forwarder = forwarder
        self._clock = clock
        self._adopted: set[str] = set()

    def run_pass(
        self,
        *,
        twins: Sequence[Mapping[str, Any]],
        assets: Mapping[str, Mapping[str, Any]],
        ctx: DriverContext,
        launch: LaunchContext,
        driver_overrides: Mapping[str, str],
        pull: bool = True,
    ) -> PassResult:
        """Bring the containers of the linked twins to their desired state."""
        opts = self._options

        # The spec hash covers the local image id, so images come first.
        def build(
            image_ids: Mapping[str, str | None], substitutes: Mapping[str, str]
        ) -> Any:
            return build_driver_specs(
                twins=twins,
                assets_by_uuid=assets,
                fingerprint=opts.fingerprint,
                profile_keys=opts.profile_keys,
                ctx=ctx,
                launch=launch,
                image_ids=image_ids,
                driver_overrides=driver_overrides,
                twin_json_present=lambda uuid: twin_path(
                    opts.config_dir, uuid
                ).is_file(),
                image_substitutes=substitutes,
            )

        # The draft knows the topology, images and failures; its mounts do
        # not matter, so it may be built before the twin files are written.
        draft = build({}, {})
        topology = draft.topology
        self._write_twin_files(topology.linked, assets)
        statuses: dict[str, DriverStatus] = {}
        for failure in draft.failures:
            log.error(
                "driver of twin %s cannot start: %s", failure.twin_uuid, failure.reason
            )
            statuses[f"twin {failure.twin_uuid}"] = DriverStatus(
                twin_uuid=failure.twin_uuid,
                container_name="",
                image="",
                outcome="failed",
                phase=SPEC_FAILURE_PHASE,
                reason=f"{failure.title}: {failure.reason}",
            )

        current = {c.name: c for c in self._runtime.list_managed(opts.fingerprint)}
        orphans = plan(draft.specs, current.values()).orphans
        for name in orphans:
            log.info("ignoring orphan container %s: its twin is no longer linked", name)

        # Each driver launches as soon as its own image is ready, so a slow
        # or stalled pull holds back only the drivers that need that image.
        # TODO: honour the services' depends_on (desired.dependencies); all
        # services of a twin launch together for now.
        groups: dict[str, list[ContainerSpec]] = {}
        for spec in draft.specs:
            groups.setdefault(spec.image, []).append(spec)
        workers = max(1, opts.parallelism)
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="pull") as pulls,
            ThreadPoolExecutor(workers, thread_name_prefix="launch") as launches,
            # Waiting for a started container to settle costs no engine
            # work, so it does not hold one of the launch slots.
            ThreadPoolExecutor(
                max(1, len(draft.specs)), thread_name_prefix="probe"
            ) as probes,
        ):
            pending = {
                pulls.submit(
                    self._prepare_image,
                    image,
                    specs,
                    fallback=draft.image_fallbacks.get(image),
                    pull=pull,
                ): image
                for image, specs in groups.items()
            }
            started: list[Future[Future[DriverStatus] | DriverStatus]] = []
            for future in as_completed(pending):
                image = pending[future]
                ready = future.result()
                names = {spec.name for spec in groups[image]}
                if ready.error is not None:
                    for spec in groups[image]:
                        statuses[spec.name] = self._status(
                            spec,
                            "failed",
                            phase=ready.error.phase,
                            reason=str(ready.error),
                        )
                    continue
                desired = build(ready.image_ids, ready.substitutes)
                specs = [spec for spec in desired.specs if spec.name in names]
                steps = plan(specs, [current[n] for n in names if n in current])
                statuses.update(self._settled(steps, specs))
                started += [
                    launches.submit(self._launch, step, probes)
                    for step in steps.launches
                ]
            for launched in started:
                outcome = launched.result()
                status = (
                    outcome if isinstance(outcome, DriverStatus) else outcome.result()
                )
                statuses[status.container_name] = status

        return PassResult(
            linked=tuple(str(t.uuid) for t in topology.linked),
            drivers=tuple(statuses.values()),
            orphans=orphans,
            without_driver=dict(topology.no_driver),
        )

    def _settled(
        self, steps: Plan, specs: Sequence[ContainerSpec]
    ) -> dict[str, DriverStatus]:
        """Statuses of the containers the plan leaves as they are."""
        by_name = {spec.name: spec for spec in specs}
        statuses: dict[str, DriverStatus] = {}
        for name in steps.adopted:
            if name not in self._adopted:
                log.info("adopted running container %s", name)
            self._adopted.add(name)
            statuses[name] = self._status(by_name[name], "adopted")
            self._follow(by_name[name])
        for name in steps.waiting:
            statuses[name] = self._status(
                by_name[name], "waiting", reason="Docker is restarting it"
            )
        return statuses

    # -- twin files -----------------------------------------------------

    def _write_twin_files(
        self, linked: Sequence[Any], assets: Mapping[str, Mapping[str, Any]]
    ) -> None:
        for twin in linked:
            asset = assets.get(str(twin.asset_uuid or ""))
            if asset is None:
                continue
            try:
                write_twin_file(self._options.config_dir, twin.raw, asset)
            except (OSError, EdgeCoreError) as exc:
                log.error(
                    "could not write twin file for %s: %s; the driver "
                    "starts without it",
                    twin.uuid,
                    exc,
                )

    # -- images ---------------------------------------------------------

    def _prepare_image(
        self,
        image: str,
        specs: Sequence[ContainerSpec],
        *,
        fallback: str | None,
        pull: bool,
    ) -> ImageReady:
        """Make ``image`` present (or its fallback); never raises."""
        targets = [
            PullTarget(
                topics.driverlog(self._options.topic_prefix, spec.twin_uuid), spec.name
            )
            for spec in specs
        ]
        try:
            image_id = self._ensure(image, targets, pull=pull)
            return ImageReady({image: image_id}, {}, None)
        except ContainerError as exc:
            if fallback is None:
                return ImageReady({}, {}, exc)
            log.info(
                "no Jetson build %s (%s); falling back to %s", image, exc, fallback
            )
        try:
            image_id = self._ensure(fallback, targets, pull=pull)
        except ContainerError as exc:
            return ImageReady({}, {}, exc)
        return ImageReady({fallback: image_id}, {image: fallback}, None)

    def _ensure(self, image: str, targets: Sequence[PullTarget], *, pull: bool) -> str:
        reporter = PullReporter(
            image, targets, self._publish, version=self._options.version
        )
        reporter.started()
        try:
            result = self._runtime.ensure_image(
                image,
                on_progress=lambda ev: reporter.event(
                    ev.layer, ev.status, ev.current, ev.total
                ),
                stall_timeout=self._options.pull_stall_timeout,
                always_pull=pull,
            )
        except ContainerError as exc:
            log.error("image %s is not available: %s", image, exc)
            reporter.failed(str(exc), timed_out=exc.phase == "pull_timeout")
            raise
        reporter.completed(pulled=result.pulled, warning=result.warning)
        return result.image_id

    # -- launches -------------------------------------------------------

    def _status(
        self,
        spec: ContainerSpec,
        outcome: str,
        *,
        phase: str | None = None,
        reason: str | None = None,
    ) -> DriverStatus:
        return DriverStatus(
            twin_uuid=spec.twin_uuid,
            container_name=spec.name,
            image=spec.image,
            outcome=outcome,
            phase=phase,
            reason=reason,
        )

    def _follow(self, spec: ContainerSpec) -> None:
        self._forwarder.follow(
            FollowTarget(
                container_name=spec.name,
                twin_uuid=spec.twin_uuid,
                image=spec.image,
                topic=topics.driverlog(self._options.topic_prefix, spec.twin_uuid),
            )
        )

    def _launch(
        self, step: Launch, probes: ThreadPoolExecutor
    ) -> Future[DriverStatus] | DriverStatus:
        """Remove, create and start; the wait for running goes to ``probes``."""
        spec = step.spec
        opts = self._options
        log.debug("%s %s: %s", step.action.value, spec.name, step.reason)
        try:
            self._runtime.remove(
                spec.name, force=True, volumes=True, fingerprint=opts.fingerprint
            )
            # TODO: bound the create with CYBERWAVE_DRIVER_CREATE_TIMEOUT_SECONDS
            # and connect extra networks, as protocol 4.5 steps 2 and 3 say.
            self._runtime.create(spec, fingerprint=opts.fingerprint)
            self._runtime.start(spec.name, fingerprint=opts.fingerprint)
        except (ForeignContainerError, DriverSpecError) as exc:
            # Nothing of ours was created; a container of someone else that
            # holds the name must never be touched, so there is no clean-up.
            log.error("driver %s cannot start: %s", spec.name, exc)
            return self._status(
                spec, "failed", phase="docker_create_failed", reason=str(exc)
            )
        except ContainerError as exc:
            log.error("driver %s failed to start: %s", spec.name, exc)
            self._discard(spec.name)
            return self._status(spec, "failed", phase=exc.phase, reason=str(exc))
        return probes.submit(self._await_running, spec)

    def _await_running(self, spec: ContainerSpec) -> DriverStatus:
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
            return self._status(spec, "failed", phase=exc.phase, reason=str(exc))
        if not result.ok:
            log.error("driver %s did not reach running: %s", spec.name, result.detail)
            self._discard(spec.name)
            return self._status(
                spec, "failed", phase=result.phase, reason=result.detail
            )
        log.info("%s is running", spec.name)
        self._follow(spec)
        return self._status(spec, "running")

    def _discard(self, name: str) -> None:
        try:
            self._runtime.remove(
                name, force=True, volumes=True, fingerprint=self._options.fingerprint
            )
        except EdgeCoreError as exc:
            log.warning("could not remove failed container %s: %s", name, exc)
