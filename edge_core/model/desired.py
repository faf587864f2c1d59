"""The driver containers this edge should run, built from plain data.

``build_driver_specs`` is the desired half of the driver reconcile: from
the environment's twins and assets, this edge's fingerprint and the host
facts, it returns one frozen ``ContainerSpec`` per driver container and,
for every linked twin that cannot get one, a ``DriverFailure`` under the
platform's alert title. One twin's bad metadata never keeps the others
from their specs.

It does not pull, create or compare containers (the planner and the
executors do) and reads no file or setting: the daemon passes them in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_core.errors import DriverSpecError
from edge_core.model.envlayer import DriverContext, driver_environment
from edge_core.model.failures import (
    TITLE_ASSET_UNAVAILABLE,
    TITLE_NO_ASSET,
    TITLE_NO_DRIVERS,
    TITLE_NO_IMAGE,
    TITLE_RUN_FAILED,
    DriverFailure,
)
from edge_core.model.images import apply_environment_tag, jetson_variant
from edge_core.model.linkage import Topology, asset_view, resolve_topology
from edge_core.model.names import driver_container_name
from edge_core.model.params import DriverParams, params_source, parse_driver_params
from edge_core.model.profiles import DEFAULT_PROFILE, select_profile
from edge_core.model.runargs import ContainerInputs, LaunchContext, container_spec
from edge_core.model.services import (
    DriverProfile,
    MissingImageError,
    ServiceDef,
    read_profile,
)
from edge_core.model.spec import ContainerSpec
from edge_core.model.twins import Asset, Twin, driver_metadata, twin_document

__all__ = [
    "DesiredDrivers",
    "DriverContext",
    "LaunchContext",
    "build_driver_specs",
    "twin_documents",
]


@dataclass(frozen=True)
class DesiredDrivers:
    """The driver containers wanted on this edge, and the twins left out.

    ``profiles`` maps each twin with specs to its profile key;
    ``image_fallbacks`` maps a Jetson image to the original reference to
    use when the Jetson build cannot be pulled (pass that pair back in
    ``image_substitutes``); ``dependencies`` maps a service container to
    the ``(container name, condition)`` pairs it must wait for.
    """

    specs: tuple[ContainerSpec, ...] = ()
    failures: tuple[DriverFailure, ...] = ()
    topology: Topology = field(default_factory=lambda: Topology((), ()))
    profiles: Mapping[str, str] = field(default_factory=dict)
    image_fallbacks: Mapping[str, str] = field(default_factory=dict)
    dependencies: Mapping[str, tuple[tuple[str, str], ...]] = field(
        default_factory=dict
    )

    @property
    def images(self) -> tuple[str, ...]:
        """The images to make present, each once, in spec order."""
        return tuple(dict.fromkeys(spec.image for spec in self.specs))


@dataclass(frozen=True)
class _Pass:
    """The inputs shared by every twin of one build."""

    ctx: DriverContext
    launch: LaunchContext
    topology: Topology
    assets: Mapping[str, object]
    profile_keys: tuple[str, ...]
    image_ids: Mapping[str, str | None]
    overrides: Mapping[str, str]
    twin_json_present: Callable[[str], bool]
    video_devices: Mapping[str, str]
    substitutes: Mapping[str, str]


@dataclass
class _Result:
    """What one twin contributes; filled by the per-twin builders."""

    specs: list[ContainerSpec] = field(default_factory=list)
    fallbacks: dict[str, str] = field(default_factory=dict)
    dependencies: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


class _TwinFailure(Exception):
    """Stops one twin's build with the failure to report."""

    def __init__(self, title: str, reason: str, profile_key: str | None = None) -> None:
        super().__init__(reason)
        self.failure_title = title
        self.failure_reason = reason
        self.profile_key = profile_key


def _presence(value: Callable[[str], bool] | Collection[str]) -> Callable[[str], bool]:
    if callable(value):
        return value
    present = frozenset(value)
    return lambda uuid: uuid in present


def _label(twin: Twin) -> str:
    return f"twin {twin.uuid} ({twin.name})" if twin.name else f"twin {twin.uuid}"


def _asset(twin: Twin, run: _Pass) -> Asset:
    if twin.asset_uuid is None:
        raise _TwinFailure(
            TITLE_NO_ASSET,
            f"{_label(twin)} has no asset; give it a catalog asset in the "
            f"environment editor",
        )
    asset = asset_view(run.assets.get(twin.asset_uuid))
    if asset is None:
        raise _TwinFailure(
            TITLE_ASSET_UNAVAILABLE,
            f"asset {twin.asset_uuid} of {_label(twin)} could not be fetched; "
            f"the next pass tries again",
        )
    return asset


def _child_registry_ids(twin: Twin, run: _Pass) -> list[str]:
    by_uuid = {t.uuid: t for t in run.topology.linked}
    ids: list[str] = []
    for child_uuid in run.topology.children_of(twin.uuid):
        child = by_uuid.get(child_uuid)
        if child is None or child.asset_uuid is None:
            continue
        asset = asset_view(run.assets.get(child.asset_uuid))
        if asset is not None and asset.registry_id:
            ids.append(asset.registry_id)
    return ids


def _profile(twin: Twin, asset: Asset, run: _Pass) -> DriverProfile:
    drivers = driver_metadata(twin, asset)
    chosen = select_profile(
        drivers, run.profile_keys, child_registry_ids=_child_registry_ids(twin, run)
    )
    if chosen is None:
        tried = ", ".join(dict.fromkeys([*run.profile_keys, DEFAULT_PROFILE]))
        raise _TwinFailure(
            TITLE_NO_DRIVERS,
            f"{_label(twin)} has no driver profile for this host (tried {tried}); "
            f"add one to metadata.drivers of the twin or of asset {asset.uuid}",
        )

    key, raw = chosen
    try:
        return read_profile(key, raw, twin_uuid=twin.uuid)
    except MissingImageError as exc:
        raise _TwinFailure(TITLE_NO_IMAGE, str(exc), key) from exc
    except DriverSpecError as exc:
        raise _TwinFailure(TITLE_RUN_FAILED, str(exc), key) from exc


def _image(ref: str, run: _Pass, result: _Result) -> str:
    """The reference to pull and run, after the tag rewrites of 4.3."""
    environment = None if run.ctx.is_production else run.ctx.environment
    image = apply_environment_tag(ref, environment)
    variant = jetson_variant(image) if run.launch.jetson else None
    if variant is not None:
        result.fallbacks[variant] = image
        image = variant
    return run.substitutes.get(image, image)


def _params(tokens: object, source: str, key: str) -> DriverParams:
    try:
        return parse_driver_params(tokens, source=source)
    except DriverSpecError as exc:
        raise _TwinFailure(TITLE_RUN_FAILED, str(exc), key) from exc


def _gpus(prefer_gpu: bool, gpu: str, launch: LaunchContext) -> str | None:
    if prefer_gpu and launch.host_is_linux and launch.gpu_available:
        return gpu
    return None


def _single(twin: Twin, profile: DriverProfile, run: _Pass, result: _Result) -> None:
    override = run.overrides.get(twin.uuid)
    ref = override or profile.image
    if ref is None:
        raise _TwinFailure(
            TITLE_NO_IMAGE,
            f"{_label(twin)} driver profile {profile.key!r} has no docker_image; "
            f"add docker_image to it or set driver_overrides in credentials.json",
            profile.key,
        )

    # An override replaces the image and drops the params written for the
    # original image (protocol.md 3.3).
    source = params_source(twin.uuid, profile.key)
    params = (
        DriverParams() if override else _params(profile.params, source, profile.key)
    )
    image = _image(ref, run, result)
    json_present = run.twin_json_present(twin.uuid)
    env = driver_environment(
        run.ctx,
        twin_uuid=twin.uuid,
        child_twin_uuids=run.topology.children_of(twin.uuid),
        twin_json_present=json_present,
        params_env=params.env,
        video_device=run.video_devices.get(twin.uuid),
    )
    inputs = ContainerInputs(
        name=driver_container_name(twin.uuid),
        twin_uuid=twin.uuid,
        image=image,
        env=env,
        params=params,
        privileged=run.launch.privileged,
        gpus=_gpus(profile.prefer_gpu, profile.gpu, run.launch),
        twin_json_present=json_present,
    )
    result.specs.append(
        container_spec(inputs, run.launch, image_id=run.image_ids.get(image))
    )


def _service(
    twin: Twin, profile: DriverProfile, service: ServiceDef, run: _Pass, result: _Result
) -> None:
    source = params_source(twin.uuid, profile.key, service.name)
    params = _params([*profile.shared_params, *service.params], source, profile.key)
    image = _image(service.image, run, result)
    json_present = run.twin_json_present(twin.uuid)
    env = driver_environment(
        run.ctx,
        twin_uuid=twin.uuid,
        child_twin_uuids=run.topology.children_of(twin.uuid),
        twin_json_present=json_present,
        params_env=params.env,
        shared_env=profile.shared_env,
        service_env=service.env,
        video_device=run.video_devices.get(twin.uuid),
    )
    privileged = (
        run.launch.privileged if service.privileged is None else service.privileged
    )
    name = driver_container_name(twin.uuid, service.name)
    inputs = ContainerInputs(
        name=name,
        twin_uuid=twin.uuid,
        image=image,
        env=env,
        params=params,
        service=service.name,
        command=service.command,
        restart=service.restart,
        stop_timeout_s=service.stop_timeout_s,
        privileged=privileged,
        gpus=_gpus(service.prefer_gpu, service.gpu, run.launch),
        env_file=service.host_env_file,
        min_restart_interval_s=service.min_restart_interval_s,
        twin_json_present=json_present,
    )
    result.specs.append(
        container_spec(inputs, run.launch, image_id=run.image_ids.get(image))
    )
    if service.depends_on:
        result.dependencies[name] = tuple(
            (driver_container_name(twin.uuid, dep.service), dep.condition)
            for dep in service.depends_on
        )


def _twin(twin: Twin, run: _Pass) -> tuple[str, _Result]:
    """The profile key and containers of one driver twin, or ``_TwinFailure``."""
    asset = _asset(twin, run)
    profile = _profile(twin, asset, run)
    result = _Result()
    if not profile.multi_service:
        _single(twin, profile, run, result)
        return profile.key, result
    for service in profile.services:
        _service(twin, profile, service, run, result)
    return profile.key, result


def build_driver_specs(
    *,
    twins: Iterable[object],
    assets_by_uuid: Mapping[str, object],
    profile_keys: Sequence[str],
    ctx: DriverContext,
    launch: LaunchContext,
    fingerprint: str | None = None,
    image_ids: Mapping[str, str | None] | None = None,
    driver_overrides: Mapping[str, str] | None = None,
    twin_json_present: Callable[[str], bool] | Collection[str] = (),
    video_devices: Mapping[str, str] | None = None,
    image_substitutes: Mapping[str, str] | None = None,
    name_holders: Mapping[str, str] | None = None,
) -> DesiredDrivers:
    """The driver containers of the twins linked to this edge.

    ``twins`` and the values of ``assets_by_uuid`` are raw backend objects
    (or views); ``fingerprint`` defaults to ``launch.fingerprint``;
    ``image_ids`` maps an image reference to its local id (``None`` or
    missing when not present); ``driver_overrides`` maps a twin uuid to
    an image (``credentials.json``); ``twin_json_present`` says which
    twins have ``{config}/<uuid>.json``; ``video_devices`` maps a twin
    uuid to its camera device; ``image_substitutes`` replaces one final
    image reference with another (the Jetson fallback);
    ``name_holders`` maps the name of each existing driver container to
    the twin it serves, so a name two twins want stays with its container.
    """
    topology = resolve_topology(
        twins, assets_by_uuid, fingerprint or launch.fingerprint
    )
    run = _Pass(
        ctx=ctx,
        launch=launch,
        topology=topology,
        assets=assets_by_uuid,
        profile_keys=tuple(profile_keys),
        image_ids=image_ids or {},
        overrides={k: v for k, v in (driver_overrides or {}).items() if v},
        twin_json_present=_presence(twin_json_present),
        video_devices=video_devices or {},
        substitutes=image_substitutes or {},
    )

    specs: list[ContainerSpec] = []
    failures: list[DriverFailure] = []
    profiles: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    dependencies: dict[str, tuple[tuple[str, str], ...]] = {}
    for twin in topology.driver_twins:
        try:
            key, result = _twin(twin, run)
        except DriverSpecError as exc:
            failures.append(DriverFailure(twin.uuid, TITLE_RUN_FAILED, str(exc)))
            continue
        except _TwinFailure as failure:
            failures.append(
                DriverFailure(
                    twin_uuid=twin.uuid,
                    title=failure.failure_title,
                    reason=failure.failure_reason,
                    profile_key=failure.profile_key,
                )
            )
            continue
        specs += result.specs
        profiles[twin.uuid] = key
        fallbacks.update(result.fallbacks)
        dependencies.update(result.dependencies)

    specs, collisions = _without_name_collisions(specs, name_holders or {})
    failures += collisions
    for collision in collisions:
        profiles.pop(collision.twin_uuid, None)

    return DesiredDrivers(
        specs=tuple(specs),
        failures=tuple(failures),
        topology=topology,
        profiles=profiles,
        image_fallbacks=fallbacks,
        dependencies=dependencies,
    )


def twin_documents(
    topology: Topology, assets_by_uuid: Mapping[str, object]
) -> dict[str, dict[str, Any]]:
    """The twin JSON content of every linked twin that has an asset
    (protocol.md 3.7: child cameras and twins without drivers included)."""
    documents: dict[str, dict[str, Any]] = {}
    for twin in topology.linked:
        if twin.asset_uuid is None:
            continue
        asset = asset_view(assets_by_uuid.get(twin.asset_uuid))
        if asset is not None:
            documents[twin.uuid] = twin_document(twin.raw, asset.raw)
    return documents


def _without_name_collisions(
    specs: Sequence[ContainerSpec], holders: Mapping[str, str]
) -> tuple[list[ContainerSpec], list[DriverFailure]]:
    """Drop the specs of twins whose container name another twin has.

    Names keep only the first 8 characters of a twin uuid (protocol.md
    4.1), so two twins can want one name. An existing container keeps
    serving the twin it was made for; a name no container has goes to the
    twin with the smallest uuid, whatever order the backend lists them in.
    Either way a container is never handed from one twin to another. The
    twins left out fail with a reason naming the holder.
    """
    wanting: dict[str, set[str]] = {}
    for spec in specs:
        wanting.setdefault(spec.name, set()).add(spec.twin_uuid)
    owner: dict[str, str | None] = {}
    for name, twins in wanting.items():
        holder = holders.get(name)
        if holder is None:
            owner[name] = min(twins)
        else:
            # A container of an unlinked twin is an orphan: never taken.
            owner[name] = holder if holder in twins else None
    losers: dict[str, str] = {}
    for spec in specs:
        if owner[spec.name] != spec.twin_uuid:
            losers.setdefault(spec.twin_uuid, spec.name)
    kept = [spec for spec in specs if spec.twin_uuid not in losers]
    failures = [
        DriverFailure(
            twin_uuid=twin_uuid,
            title=TITLE_RUN_FAILED,
            reason=_collision_reason(name, owner[name], holders.get(name)),
        )
        for twin_uuid, name in sorted(losers.items())
    ]
    return kept, failures


def _collision_reason(name: str, owner: str | None, holder: str | None) -> str:
    if owner is None:
        return (
            f"its container name {name} is held by the container of twin "
            f"{holder}, which is no longer linked to this edge; remove that "
            f"container (docker rm -f {name}) to start this driver"
        )
    return (
        f"its container name {name} is already the driver of twin "
        f"{owner} (their uuids start alike); one of the two twins needs "
        f"another uuid, only the driver of twin {owner} runs on this edge"
    )
