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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_core.cloud import topics
from edge_core.drivers.logs import FollowTarget, LogForwarder, Publish
from edge_core.drivers.planner import Launch, plan
from edge_core.drivers.pulls import PullReporter, PullTarget
from edge_core.errors import ContainerError, EdgeCoreError
from edge_core.model.desired import (
    DriverContext,
    LaunchContext,
    build_driver_specs,
)
from edge_core.model.linkage import resolve_topology
from edge_core.model.spec import ContainerSpec
from edge_core.runtime.docker import DockerRuntime
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
class PassResult:
    """What one pass found and did, per driver container."""

    linked: tuple[str, ...]
    drivers: tuple[DriverStatus, ...]
    orphans: tuple[str, ...]
    written: Mapping[str, str] = field(default_factory=dict)

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

    @property
    def any_running(self) -> bool:
        return any(d.outcome in ("running", "adopted") for d in self.drivers)


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
        topology = resolve_topology(twins, assets, opts.fingerprint)
        written = self._write_twin_files(topology.linked, assets)

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

        draft = build({}, {})
        image_ids, image_errors = self._ensure_images(draft.specs, pull=pull)
        substitutes = self._fallbacks(
            draft.image_fallbacks, image_ids, image_errors, pull=pull
        )
        desired = build(image_ids, substitutes)

        statuses: dict[str, DriverStatus] = {}
        for failure in desired.failures:
            name = f"twin {failure.twin_uuid[:8]}"
            log.error(
                "driver of twin %s cannot start: %s", failure.twin_uuid, failure.reason
            )
            statuses[name] = DriverStatus(
                twin_uuid=failure.twin_uuid,
                container_name="",
                image="",
                outcome="failed",
                phase=SPEC_FAILURE_PHASE,
                reason=f"{failure.title}: {failure.reason}",
            )

        launchable: list[ContainerSpec] = []
        for spec in desired.specs:
            error = image_errors.get(spec.image)
            if error is None:
                launchable.append(spec)
                continue
            statuses[spec.name] = DriverStatus(
                twin_uuid=spec.twin_uuid,
                container_name=spec.name,
                image=spec.image,
                outcome="failed",
                phase=error.phase,
                reason=str(error),
            )

        current = self._runtime.list_managed(opts.fingerprint)
        steps = plan(launchable, current)
        for name in steps.orphans:
            log.info("ignoring orphan container %s: its twin is no longer linked", name)
        by_name = {spec.name: spec for spec in launchable}
        for name in steps.adopted:
            spec = by_name[name]
            log.info("adopted running container %s", name)
            statuses[name] = self._status(spec, "adopted")
            self._follow(spec)
        for name in steps.waiting:
            statuses[name] = self._status(
                by_name[name], "waiting", reason="Docker is restarting it"
            )

        with ThreadPoolExecutor(
            max_workers=max(1, opts.parallelism), thread_name_prefix="launch"
        ) as pool:
            for status in pool.map(self._launch, steps.launches):
                statuses[status.container_name] = status

        return PassResult(
            linked=tuple(str(t.uuid) for t in topology.linked),
            drivers=tuple(statuses.values()),
            orphans=steps.orphans,
            written=written,
        )

    # -- twin files -----------------------------------------------------

    def _write_twin_files(
        self, linked: Sequence[Any], assets: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, str]:
        written: dict[str, str] = {}
        for twin in linked:
            asset = assets.get(str(twin.asset_uuid or ""))
            if asset is None:
                continue
            try:
                written[twin.uuid] = write_twin_file(
                    self._options.config_dir, twin.raw, asset
                )
            except (OSError, EdgeCoreError) as exc:
                log.error(
                    "could not write twin file for %s: %s; the driver "
                    "starts without it",
                    twin.uuid,
                    exc,
                )
        return written

    # -- images ---------------------------------------------------------

    def _ensure_images(
        self, specs: Sequence[ContainerSpec], *, pull: bool
    ) -> tuple[dict[str, str | None], dict[str, ContainerError]]:
        targets: dict[str, list[PullTarget]] = {}
        for spec in specs:
            topic = topics.driverlog(self._options.topic_prefix, spec.twin_uuid)
            targets.setdefault(spec.image, []).append(PullTarget(topic, spec.name))

        def ensure(image: str) -> tuple[str, str | None, ContainerError | None]:
            reporter = PullReporter(
                image, targets[image], self._publish, version=self._options.version
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
                return image, None, exc
            reporter.completed(pulled=result.pulled, warning=result.warning)
            return image, result.image_id, None

        ids: dict[str, str | None] = {}
        errors: dict[str, ContainerError] = {}
        if not targets:
            return ids, errors
        workers = max(1, min(self._options.parallelism, len(targets)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pull") as pool:
            for image, image_id, error in pool.map(ensure, list(targets)):
                ids[image] = image_id
                if error is not None:
                    errors[image] = error
        return ids, errors

    def _fallbacks(
        self,
        fallbacks: Mapping[str, str],
        image_ids: dict[str, str | None],
        errors: dict[str, ContainerError],
        *,
        pull: bool,
    ) -> dict[str, str]:
        """Original tags to use where a Jetson build could not be had."""
        substitutes: dict[str, str] = {}
        for image, original in fallbacks.items():
            if image not in errors:
                continue
            log.info("no Jetson build %s; falling back to %s", image, original)
            try:
                result = self._runtime.ensure_image(
                    original,
                    on_progress=lambda _event: None,
                    stall_timeout=self._options.pull_stall_timeout,
                    always_pull=pull,
                )
            except ContainerError as exc:
                log.error("image %s is not available either: %s", original, exc)
                continue
            del errors[image]
            image_ids[original] = result.image_id
            substitutes[image] = original
        return substitutes

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

    def _launch(self, step: Launch) -> DriverStatus:
        spec = step.spec
        opts = self._options
        log.debug("%s %s: %s", step.action.value, spec.name, step.reason)
        try:
            self._runtime.remove(
                spec.name, force=True, volumes=True, fingerprint=opts.fingerprint
            )
            self._runtime.create(spec, fingerprint=opts.fingerprint)
            self._runtime.start(spec.name, fingerprint=opts.fingerprint)
            result = self._runtime.probe(
                spec.name,
                fingerprint=opts.fingerprint,
                timeout=opts.probe_timeout,
                interval=opts.probe_interval,
            )
        except ContainerError as exc:
            log.error("driver %s failed to start: %s", spec.name, exc)
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
