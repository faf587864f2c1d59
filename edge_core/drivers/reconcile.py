"""One driver pass: from the environment's twins to running containers.

A pass writes the twin files, makes sure every driver image is present
(pulling in parallel, at most ``parallelism`` at once), builds the frozen
container specs, plans against the containers carrying this edge's
fingerprint label, and carries out the launches with the same bounded
parallelism. One twin's failure never stops the others: it becomes a
failed outcome with a reason a person can act on.

Every launch attempt is shown to the web UI as a ``driver_starting`` card
that follows the pull and the launch, and a failure as a
``driver_start_failure`` alert (protocol.md 1.8, 4.5). The alert calls
are queued, never awaited, so a backend that is away does not slow a
launch.

It does not fetch anything from the cloud; the caller hands it the twins
and assets (fresh from the backend or from the persisted snapshot).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edge_core.alerts.book import AlertBook
from edge_core.alerts.launches import LaunchAlerts
from edge_core.config.settings import Settings
from edge_core.drivers.launch import (
    HoldReason,
    Launcher,
    LaunchOptions,
    OnLaunch,
    driver_status,
)
from edge_core.drivers.logs import LogForwarder, Publish
from edge_core.drivers.planner import Launch, Plan, plan, renamed
from edge_core.drivers.pulls import INTERRUPTED_PHASE, ImagePreparer, ImageReady
from edge_core.errors import ContainerError, EdgeCoreError
from edge_core.model.desired import (
    DesiredDrivers,
    DriverContext,
    LaunchContext,
    build_driver_specs,
)
from edge_core.model.failures import (
    TITLE_IMAGE_NOT_AVAILABLE,
)
from edge_core.model.spec import ContainerSpec
from edge_core.model.twins import Twin
from edge_core.runtime.container import ContainerState, ContainerView
from edge_core.runtime.docker import DockerRuntime
from edge_core.state import DriverStatus
from edge_core.twins.files import twin_path, write_twin_file

log = logging.getLogger(__name__)

# The phase of a twin whose driver metadata cannot become a container.
SPEC_FAILURE_PHASE = "driver_spec"

TwinFiles = Callable[[Sequence[Twin], Mapping[str, Mapping[str, Any]]], object]
"""Writes the twin files of the linked twins (twin views, raw assets by uuid)."""

_NO_HOLD: Mapping[str, str] = MappingProxyType({})


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

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        fingerprint: str,
        profile_keys: Sequence[str],
        version: str,
    ) -> PassOptions:
        """The options of the daemon's passes, from its ``Settings``."""
        return cls(
            config_dir=settings.config_dir,
            fingerprint=fingerprint,
            topic_prefix=settings.mqtt_topic_prefix,
            version=version,
            profile_keys=tuple(profile_keys),
            parallelism=settings.driver_launch_parallelism,
            pull_stall_timeout=settings.pull_timeout,
            probe_timeout=settings.driver_startup_probe,
            probe_interval=settings.driver_probe_interval,
            remove_timeout=settings.driver_remove_timeout,
        )


@dataclass(frozen=True)
class PassResult:
    """What one pass found and did, per driver container.

    ``desired`` maps every driver container the pass wanted (held ones
    included) to its twin uuid and spec hash.
    """

    linked: tuple[str, ...]
    drivers: tuple[DriverStatus, ...]
    orphans: tuple[str, ...]
    without_driver: Mapping[str, str] = field(default_factory=dict)
    desired: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    missing_twin_files: tuple[str, ...] = ()
    """Linked twins with an asset whose twin file could not be written:
    their drivers run without it until a later pass writes it."""

    @property
    def all_running(self) -> bool:
        """Every driver container of a linked twin runs (adopted or started).

        A twin whose metadata cannot become a container has none to wait
        for: nothing changes for it until someone edits the metadata, and
        waiting would keep the bootstrap health duplicating the running
        drivers' own health. A held driver does not run, so it counts as
        not running.
        """
        containers = [d for d in self.drivers if d.phase != SPEC_FAILURE_PHASE]
        return bool(containers) and all(
            d.outcome in ("running", "adopted") for d in containers
        )

    @property
    def converged(self) -> bool:
        """Nothing left for a pass to do until something changes.

        Every driver container runs (or is paused by a person), and no
        twin file is missing; a twin with no container at all (its
        metadata is broken, or it has no driver) gives a pass nothing to
        retry either. A held, waiting or failed driver is not converged.
        """
        if self.missing_twin_files:
            return False
        containers = [d for d in self.drivers if d.phase != SPEC_FAILURE_PHASE]
        return all(d.outcome in ("running", "adopted", "paused") for d in containers)

    @property
    def launched(self) -> tuple[str, ...]:
        """The containers this pass started and saw running."""
        return tuple(d.container_name for d in self.drivers if d.outcome == "running")

    @property
    def held(self) -> tuple[str, ...]:
        """The containers this pass was told to leave alone."""
        return tuple(d.container_name for d in self.drivers if d.outcome == "held")


BuildSpecs = Callable[[Mapping[str, str | None], Mapping[str, str]], DesiredDrivers]


@dataclass
class _Run:
    """What one pass shares between its steps."""

    build: BuildSpecs
    current: Mapping[str, ContainerView]
    pull: bool
    alerts: LaunchAlerts
    hold_reason: HoldReason | None = None
    statuses: dict[str, DriverStatus] = field(default_factory=dict)
    desired: dict[str, tuple[str, str]] = field(default_factory=dict)


def _running_hash(spec: ContainerSpec, current: Mapping[str, ContainerView]) -> str:
    """The spec hash of the container serving ``spec``'s twin now, else
    the draft's."""
    view = current.get(spec.name)
    if view is not None and view.twin_uuid == spec.twin_uuid and view.spec_hash:
        return view.spec_hash
    return spec.spec_hash


def _likely_kept(view: ContainerView) -> bool:
    """Whether a container is up (or paused), so a pass may leave it be."""
    return view.state in (
        ContainerState.RUNNING,
        ContainerState.RESTARTING,
        ContainerState.PAUSED,
    )


def _likely_launch(spec: ContainerSpec, view: ContainerView | None) -> bool:
    """Whether the pass will probably (re)create ``spec``'s container.

    Decided before the image is pulled, to open its starting card at the
    start of the pull; the plan after the pull has the last word.
    """
    if view is None:
        return True
    if view.image != spec.image:
        return True
    return not _likely_kept(view)


class DriverReconciler:
    """Carries out driver passes against one Docker engine.

    ``alerts`` (None: no alerts) receives the cards and failures of the
    launches; ``twin_files`` (None: the pass writes them itself) writes
    the twin files of the linked twins at the start of each pass;
    ``on_launch`` is told each launch attempt as it ends.
    """

    def __init__(
        self,
        runtime: DockerRuntime,
        *,
        options: PassOptions,
        publish: Publish,
        forwarder: LogForwarder,
        clock: Callable[[], float] = time.monotonic,
        alerts: AlertBook | None = None,
        twin_files: TwinFiles | None = None,
        on_launch: OnLaunch | None = None,
    ) -> None:
        self._runtime = runtime
        self._options = options
        self._forwarder = forwarder
        self._clock = clock
        self._alerts = alerts
        self._twin_files: TwinFiles = twin_files or self._write_twin_files
        self._images = ImagePreparer(
            runtime,
            publish,
            version=options.version,
            topic_prefix=options.topic_prefix,
            stall_timeout=options.pull_stall_timeout,
        )
        self._launcher = Launcher(
            runtime,
            LaunchOptions(
                fingerprint=options.fingerprint,
                topic_prefix=options.topic_prefix,
                probe_timeout=options.probe_timeout,
                probe_interval=options.probe_interval,
            ),
            forwarder,
            on_launch=on_launch,
        )
        # The pass running now: what it wants so far, and its interruption.
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._passing = False
        self._interrupt: Future[str] = Future()
        # Orphans and broken metadata already told about, so a pass repeats
        # neither the INFO/ERROR line nor the alert.
        self._orphans_told: set[str] = set()
        self._spec_failures_told: dict[str, str] = {}
        # The phase of each container's last failed launch, so a held retry
        # can say what it waits to try again.
        self._failed_phase: dict[str, str | None] = {}

    def run_pass(
        self,
        *,
        twins: Sequence[Mapping[str, Any]],
        assets: Mapping[str, Mapping[str, Any]],
        ctx: DriverContext,
        launch: LaunchContext,
        driver_overrides: Mapping[str, str],
        pull: bool = True,
        hold: Mapping[str, str] = _NO_HOLD,
        hold_reason: HoldReason | None = None,
    ) -> PassResult:
        """Bring the containers of the linked twins to their desired state.

        ``hold`` maps container names to the reason they must not be
        launched now (a parked or debounced driver): they are neither
        launched nor reported as orphans, and their outcome is ``held``.
        ``hold_reason`` is asked the same per container with the state this
        pass sees (None: no container), so a driver killed since the caller
        computed ``hold`` is held all the same.
        """
        with self._lock:
            self._interrupt = Future()
            self._passing = True
        try:
            return self._pass(
                twins, assets, ctx, launch, driver_overrides, pull, hold, hold_reason
            )
        finally:
            with self._lock:
                self._passing = False
                self._run = None

    def interrupt(self, reason: str) -> None:
        """Cut the pass running now short, if any (a restart waits for it).

        Pulls in flight are abandoned (the engine may finish them on its
        own) and nothing more is launched; the drivers left out are held
        with ``reason``. Launches already under way finish.
        """
        with self._lock:
            if self._passing and not self._interrupt.done():
                log.info("cutting the driver pass short: %s", reason)
                self._interrupt.set_result(reason)

    def in_flight(self) -> dict[str, tuple[str, str]]:
        """The containers the pass running now wants so far (twin uuid and
        spec hash by name); empty between passes."""
        with self._lock:
            return dict(self._run.desired) if self._run is not None else {}

    def _pass(
        self,
        twins: Sequence[Mapping[str, Any]],
        assets: Mapping[str, Mapping[str, Any]],
        ctx: DriverContext,
        launch: LaunchContext,
        driver_overrides: Mapping[str, str],
        pull: bool,
        hold: Mapping[str, str],
        hold_reason: HoldReason | None,
    ) -> PassResult:
        listed = {
            c.name: c for c in self._runtime.list_managed(self._options.fingerprint)
        }
        holders = {
            name: c.twin_uuid for name, c in listed.items() if c.twin_uuid is not None
        }
        build = self._builder(twins, assets, ctx, launch, driver_overrides, holders)
        # The draft knows the topology, images and failures; its mounts do
        # not matter, so it may be built before the twin files are written.
        draft = build({}, {})
        topology = draft.topology
        self._twin_files(topology.linked, assets)
        missing_files = tuple(
            twin.uuid
            for twin in topology.linked
            if str(twin.asset_uuid or "") in assets
            and not self._has_twin_file(twin.uuid)
        )
        environments = {t.uuid: t.environment_uuid for t in topology.linked}
        current = self._reclaim(draft.specs, listed)
        if hold_reason is not None:
            hold = dict(hold)
            for spec in draft.specs:
                seen = current.get(spec.name)
                reason = hold_reason(spec.name, seen.state.value if seen else None)
                if reason is not None and spec.name not in hold:
                    hold[spec.name] = reason
        run = _Run(
            build,
            current,
            pull,
            LaunchAlerts(self._alerts, environments),
            hold_reason=hold_reason,
        )
        self._spec_failures(run, draft)
        orphans = self._orphans(draft, current)
        active = [spec for spec in draft.specs if spec.name not in hold]
        # Until its images are present the pass knows no final spec hash (it
        # covers the image id): an existing container stands for its twin
        # with the spec it runs, so supervision meanwhile never takes a
        # draft's hash for a change, nor parks a driver with one.
        run.desired.update(
            (spec.name, (spec.twin_uuid, _running_hash(spec, current)))
            for spec in active
        )
        self._hold(run, [spec for spec in draft.specs if spec.name in hold], hold)
        with self._lock:
            self._run = run

        # A card opens as its pull starts, so the web UI sees the download.
        for spec in active:
            if _likely_launch(spec, current.get(spec.name)):
                run.alerts.open(spec)
        try:
            self._carry_out(run, active, draft.image_fallbacks)
        except BaseException as exc:
            run.alerts.finish(exc)
            raise
        run.alerts.finish()
        self._remember_failures(run.statuses.values())

        return PassResult(
            linked=tuple(str(t.uuid) for t in topology.linked),
            drivers=tuple(run.statuses.values()),
            orphans=orphans,
            without_driver=dict(topology.no_driver),
            desired=dict(run.desired),
            missing_twin_files=missing_files,
        )

    def _remember_failures(self, statuses: Iterable[DriverStatus]) -> None:
        for status in statuses:
            if not status.container_name:
                continue
            if status.outcome == "failed":
                self._failed_phase[status.container_name] = status.phase
            elif status.outcome in ("running", "adopted"):
                self._failed_phase.pop(status.container_name, None)

    def _builder(
        self,
        twins: Sequence[Mapping[str, Any]],
        assets: Mapping[str, Mapping[str, Any]],
        ctx: DriverContext,
        launch: LaunchContext,
        driver_overrides: Mapping[str, str],
        name_holders: Mapping[str, str],
    ) -> BuildSpecs:
        """The spec builder of one pass, given the local image ids to hash.

        The spec hash covers the local image id, so images come first and
        the specs are built again once they are present. ``name_holders``
        (container name to twin, as listed at the start of the pass) keeps
        each existing container with the twin it serves.
        """
        opts = self._options

        def build(
            image_ids: Mapping[str, str | None], substitutes: Mapping[str, str]
        ) -> DesiredDrivers:
            return build_driver_specs(
                twins=twins,
                assets_by_uuid=assets,
                fingerprint=opts.fingerprint,
                profile_keys=opts.profile_keys,
                ctx=ctx,
                launch=launch,
                image_ids=image_ids,
                driver_overrides=driver_overrides,
                twin_json_present=self._has_twin_file,
                image_substitutes=substitutes,
                name_holders=name_holders,
            )

        return build

    def _reclaim(
        self, specs: Sequence[ContainerSpec], current: dict[str, ContainerView]
    ) -> dict[str, ContainerView]:
        """Give a renamed driver container its name back, so no second one
        is started for the same device; the containers as they are then."""
        for old, new in renamed(specs, current.values()).items():
            log.info(
                "container %s is the driver %s under another name; renaming it back",
                old,
                new,
            )
            try:
                self._runtime.rename(old, new, fingerprint=self._options.fingerprint)
            except EdgeCoreError as exc:
                log.warning("could not rename %s back to %s: %s", old, new, exc)
                continue
            current[new] = replace(current.pop(old), name=new)
        return current

    def _orphans(
        self, draft: DesiredDrivers, current: Mapping[str, ContainerView]
    ) -> tuple[str, ...]:
        """Containers of twins no longer linked: reported, never touched.

        The container of a twin still linked whose metadata no longer
        becomes a spec is left alone too, but it is no orphan: its twin's
        failure says why it is not managed.
        """
        linked = {twin.uuid for twin in draft.topology.linked}
        orphans = tuple(
            name
            for name in plan(draft.specs, current.values()).orphans
            if current[name].twin_uuid not in linked
        )
        for name in orphans:
            level = logging.DEBUG if name in self._orphans_told else logging.INFO
            log.log(
                level,
                "ignoring orphan container %s: its twin is no longer linked",
                name,
            )
        self._orphans_told = set(orphans)
        return orphans

    def _spec_failures(self, run: _Run, draft: DesiredDrivers) -> None:
        """Twins whose metadata cannot become a container fail alone."""
        told, self._spec_failures_told = self._spec_failures_told, {}
        for failure in draft.failures:
            # Said (and raised) when it starts or changes, not at every pass.
            new = told.get(failure.twin_uuid) != failure.reason
            self._spec_failures_told[failure.twin_uuid] = failure.reason
            log.log(
                logging.ERROR if new else logging.DEBUG,
                "driver of twin %s cannot start: %s",
                failure.twin_uuid,
                failure.reason,
            )
            if new:
                run.alerts.spec_failure(failure)
            run.statuses[f"twin {failure.twin_uuid}"] = DriverStatus(
                twin_uuid=failure.twin_uuid,
                container_name="",
                image="",
                outcome="failed",
                phase=SPEC_FAILURE_PHASE,
                reason=f"{failure.title}: {failure.reason}",
            )

    def _hold(
        self, run: _Run, held: Sequence[ContainerSpec], hold: Mapping[str, str]
    ) -> None:
        """Statuses and spec hashes of the held containers; nothing is pulled.

        The hash is built with the image id present on this host, as a
        launch would, so a held driver's spec does not look changed.
        """
        if not held:
            return
        image_ids: dict[str, str | None] = {}
        for image in {spec.image for spec in held}:
            try:
                image_ids[image] = self._runtime.image_id(image)
            except ContainerError as exc:
                log.debug("could not look up image %s: %s", image, exc)
                image_ids[image] = None
        names = {spec.name for spec in held}
        for spec in run.build(image_ids, {}).specs:
            if spec.name in names:
                run.desired[spec.name] = (spec.twin_uuid, spec.spec_hash)
        for spec in held:
            log.debug("holding %s: %s", spec.name, hold[spec.name])
            run.statuses[spec.name] = driver_status(
                spec,
                "held",
                phase=self._failed_phase.get(spec.name),
                reason=hold[spec.name],
            )

    def _carry_out(
        self,
        run: _Run,
        specs: Sequence[ContainerSpec],
        fallbacks: Mapping[str, str],
    ) -> None:
        """Pull every image, then launch what the plan says, as images arrive."""
        # Each driver launches as soon as its own image is ready, so a slow
        # or stalled pull holds back only the drivers that need that image.
        # TODO: honour the services' depends_on (desired.dependencies); all
        # services of a twin launch together for now.
        groups: dict[str, list[ContainerSpec]] = {}
        for spec in specs:
            groups.setdefault(spec.image, []).append(spec)
        workers = max(1, self._options.parallelism)
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="pull") as pulls,
            ThreadPoolExecutor(workers, thread_name_prefix="launch") as launches,
            # Waiting for a started container to settle costs no engine
            # work, so it does not hold one of the launch slots.
            ThreadPoolExecutor(
                max(1, len(specs)), thread_name_prefix="probe"
            ) as probes,
        ):
            pending = {
                pulls.submit(
                    self._images.prepare,
                    image,
                    group,
                    fallback=fallbacks.get(image),
                    pull=run.pull,
                    alerts=run.alerts,
                    interrupt=self._interrupt,
                ): image
                for image, group in groups.items()
            }
            started: list[Future[Future[DriverStatus] | DriverStatus]] = []
            for future in as_completed(pending):
                group = groups[pending[future]]
                ready = future.result()
                started += self._image_ready(run, group, ready, launches, probes)
            for launched in started:
                outcome = launched.result()
                status = (
                    outcome if isinstance(outcome, DriverStatus) else outcome.result()
                )
                run.statuses[status.container_name] = status

    def _image_ready(
        self,
        run: _Run,
        group: Sequence[ContainerSpec],
        ready: ImageReady,
        launches: ThreadPoolExecutor,
        probes: ThreadPoolExecutor,
    ) -> list[Future[Future[DriverStatus] | DriverStatus]]:
        """Plan the containers of one image and submit their launches."""
        error = ready.error
        if error is not None and error.phase == INTERRUPTED_PHASE:
            for spec in group:
                run.alerts.discard(spec.name)
                run.statuses[spec.name] = driver_status(
                    spec, "held", reason=self._interrupt.result()
                )
            return []
        if error is not None:
            kept = self._kept_without_image(run, group)
            run.statuses.update(kept)
            for spec in group:
                if spec.name in kept:
                    continue
                run.statuses[spec.name] = self._launcher.told(
                    spec,
                    driver_status(spec, "failed", phase=error.phase, reason=str(error)),
                )
                run.alerts.failed(
                    spec,
                    phase=error.phase,
                    detail=str(error),
                    title=TITLE_IMAGE_NOT_AVAILABLE,
                )
            return []
        names = {spec.name for spec in group}
        desired = run.build(ready.image_ids, ready.substitutes)
        final = [spec for spec in desired.specs if spec.name in names]
        with self._lock:
            run.desired.update(
                (spec.name, (spec.twin_uuid, spec.spec_hash)) for spec in final
            )
        steps = plan(final, [run.current[n] for n in names if n in run.current])
        run.statuses.update(self._settled(steps, final, run.alerts))
        return [
            launches.submit(self._launch, step, probes, run) for step in steps.launches
        ]

    def _kept_without_image(
        self, run: _Run, group: Sequence[ContainerSpec]
    ) -> dict[str, DriverStatus]:
        """Containers that run the very spec wanted from an image no longer
        on this host (untagged or removed by hand): nothing needs the image
        while they exist, so they are adopted as they are."""
        statuses: dict[str, DriverStatus] = {}
        for spec in group:
            view = run.current.get(spec.name)
            if view is None or not view.image_id or not _likely_kept(view):
                continue
            built = run.build({spec.image: view.image_id}, {}).specs
            final = [built_spec for built_spec in built if built_spec.name == spec.name]
            steps = plan(final, [view])
            if steps.launches:
                continue
            log.info(
                "image %s is no longer on this host; %s keeps running from it",
                spec.image,
                spec.name,
            )
            with self._lock:
                run.desired.update(
                    (kept.name, (kept.twin_uuid, kept.spec_hash)) for kept in final
                )
            statuses.update(self._settled(steps, final, run.alerts))
        return statuses

    def _settled(
        self, steps: Plan, specs: Sequence[ContainerSpec], alerts: LaunchAlerts
    ) -> dict[str, DriverStatus]:
        """Statuses of the containers the plan leaves as they are."""
        by_name = {spec.name: spec for spec in specs}
        statuses: dict[str, DriverStatus] = {}
        for name in steps.adopted:
            spec = by_name[name]
            if name not in self._launcher.adopted:
                log.info("adopted running container %s", name)
                alerts.adopted_first(spec.twin_uuid)
            self._launcher.adopted.add(name)
            alerts.discard(name)
            statuses[name] = driver_status(spec, "adopted")
            self._launcher.follow(spec)
        for name in steps.waiting:
            alerts.discard(name)
            statuses[name] = driver_status(
                by_name[name], "waiting", reason="Docker is restarting it"
            )
        for name in steps.paused:
            alerts.discard(name)
            log.debug("%s is paused; left as it is", name)
            statuses[name] = driver_status(
                by_name[name],
                "paused",
                reason=f"paused by hand; left alone until: docker unpause {name}",
            )
        return statuses

    # -- twin files -----------------------------------------------------

    def _has_twin_file(self, twin_uuid: str) -> bool:
        """True when the twin has a regular file to mount (never a symlink)."""
        path = twin_path(self._options.config_dir, twin_uuid)
        return path is not None and path.is_file() and not path.is_symlink()

    def _write_twin_files(
        self, linked: Sequence[Twin], assets: Mapping[str, Mapping[str, Any]]
    ) -> None:
        for twin in linked:
            asset = assets.get(str(twin.asset_uuid or ""))
            if asset is None:
                continue
            try:
                write_twin_file(self._options.config_dir, twin.raw, asset)
            except (OSError, ValueError, EdgeCoreError) as exc:
                log.error(
                    "could not write twin file for %s: %s; the driver "
                    "starts without it",
                    twin.uuid,
                    exc,
                )

    # -- launches -------------------------------------------------------

    def launching(self) -> frozenset[str]:
        """Containers a pass is creating, starting or probing right now.

        Supervision leaves them alone while it runs beside a pass.
        """
        return self._launcher.launching()

    def _launch(
        self, step: Launch, probes: ThreadPoolExecutor, run: _Run
    ) -> Future[DriverStatus] | DriverStatus:
        def hold() -> str | None:
            if self._interrupt.done():
                return self._interrupt.result()
            if run.hold_reason is None:
                return None
            seen = run.current.get(step.spec.name)
            return run.hold_reason(step.spec.name, seen.state.value if seen else None)

        return self._launcher.launch(step, probes, run.alerts, hold=hold)
