"""The run options and labels of one driver container, and its spec hash.

Every driver container is created the same way (protocol.md 4.4, 4.6):
the edge's own flags (``--init``, stop timeout, restart policy,
``--privileged``, log rotation, host network), then the driver's params,
then the mounts, the final environment and the name; the edge labels of
4.2 and 7b item 16 go on top and carry the spec hash.

This module only assembles values. Which image, env and params a twin gets
is decided in ``desired``; the Docker adapter turns the result into an
Engine API call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge_core.model.envlayer import (
    CONTAINER_CONFIG_DIR,
    VIDEO_DEVICE,
    container_twin_json_path,
)
from edge_core.model.options import RunOptions, fold, merge
from edge_core.model.params import DriverParams
from edge_core.model.spec import (
    EDGE_LABELS,
    LABEL_CREATED_BY,
    LABEL_FINGERPRINT,
    LABEL_MIN_RESTART,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_TWIN,
    ContainerSpec,
    spec_hash,
)

V4L_DIR = "/dev/v4l"
CAMERA_IMAGE_HINTS = ("camera-driver", "camera_driver")
LOGS_OFF = "off"
PRODUCT = "cyberwave-edge-core"


@dataclass(frozen=True)
class LaunchContext:
    """Host facts and settings that shape every driver container.

    ``config_dir`` is the config directory as a host path; ``privileged``
    is ``CYBERWAVE_DRIVER_PRIVILEGED`` (7b item 21); ``log_max_size`` of
    ``off`` turns log options off; ``jetson`` enables the Jetson image
    rewrite (protocol.md 4.3 step 3); ``gpu_available`` means the nvidia
    runtime is present AND is Docker's default runtime, the condition for
    ``prefer_gpu`` (protocol.md 3.8).
    """

    config_dir: str | os.PathLike[str]
    version: str
    fingerprint: str
    privileged: bool = True
    log_max_size: str = "10m"
    log_max_file: str = "3"
    host_is_linux: bool = True
    v4l_exists: bool = False
    jetson: bool = False
    gpu_available: bool = False

    @property
    def config_path(self) -> str:
        """The config directory as a string without a trailing slash."""
        return os.fspath(self.config_dir).rstrip("/") or "/"


@dataclass(frozen=True)
class ContainerInputs:
    """Everything that differs between two driver containers."""

    name: str
    twin_uuid: str
    image: str
    env: Mapping[str, str]
    params: DriverParams = field(default_factory=DriverParams)
    service: str | None = None
    command: tuple[str, ...] = ()
    restart: str = "unless-stopped"
    stop_timeout_s: int = 5
    privileged: bool = True
    gpus: str | None = None
    env_file: str | None = None
    min_restart_interval_s: int | None = None
    twin_json_present: bool = False


Pairs = list[tuple[str, str | bool]]


def _log_pairs(params: DriverParams, launch: LaunchContext) -> Pairs:
    if params.has("--log-driver") or launch.log_max_size.strip().lower() == LOGS_OFF:
        return []
    pinned = {opt.partition("=")[0] for opt in params.options.get("--log-opt", [])}
    pairs: Pairs = [("--log-driver", "json-file")]
    if "max-size" not in pinned:
        pairs.append(("--log-opt", f"max-size={launch.log_max_size.strip()}"))
    if "max-file" not in pinned:
        pairs.append(("--log-opt", f"max-file={launch.log_max_file.strip()}"))
    return pairs


def _network_pairs(params: DriverParams, launch: LaunchContext) -> Pairs:
    if params.has("--network"):
        return []
    if launch.host_is_linux:
        return [("--network", "host")]
    if params.has("--add-host"):
        return []
    return [("--add-host", "host.docker.internal:host-gateway")]


def _edge_pairs(inputs: ContainerInputs, launch: LaunchContext) -> Pairs:
    """The edge's own flags, which the driver's params may override."""
    pairs: Pairs = [
        ("--init", True),
        ("--stop-timeout", str(inputs.stop_timeout_s)),
        ("--restart", inputs.restart),
    ]
    if inputs.privileged:
        pairs.append(("--privileged", True))
    pairs += _log_pairs(inputs.params, launch)
    if inputs.gpus:
        pairs.append(("--gpus", inputs.gpus))
    pairs += _network_pairs(inputs.params, launch)
    if inputs.min_restart_interval_s is not None:
        pairs.append(
            ("--label", f"{LABEL_MIN_RESTART}={inputs.min_restart_interval_s}")
        )
    if inputs.env_file:
        pairs.append(("--env-file", f"{launch.config_path}/{inputs.env_file}"))
    return pairs


def wants_v4l(image: str, env: Mapping[str, str]) -> bool:
    """Whether a driver needs ``/dev/v4l`` (a camera image or a v4l device)."""
    lowered = image.lower()
    if any(hint in lowered for hint in CAMERA_IMAGE_HINTS):
        return True
    return env.get(VIDEO_DEVICE, "").startswith(f"{V4L_DIR}/")


def _mounted(options: RunOptions, source: str) -> bool:
    volumes = options.get("--volume", [])
    return any(str(v).partition(":")[0].rstrip("/") == source for v in volumes)


def _mount_pairs(
    inputs: ContainerInputs, launch: LaunchContext, options: RunOptions
) -> Pairs:
    config = launch.config_path
    pairs: Pairs = []
    if inputs.twin_json_present:
        inside = container_twin_json_path(inputs.twin_uuid)
        pairs.append(("--volume", f"{config}/{inputs.twin_uuid}.json:{inside}:rw"))
    pairs.append(("--volume", f"{config}:{CONTAINER_CONFIG_DIR}:ro"))
    if (
        launch.host_is_linux
        and launch.v4l_exists
        and wants_v4l(inputs.image, inputs.env)
        and not _mounted(options, V4L_DIR)
    ):
        pairs.append(("--volume", f"{V4L_DIR}:{V4L_DIR}:ro"))
    return pairs


def _without_edge_labels(options: RunOptions) -> RunOptions:
    """Params may not forge the labels that say which containers are ours."""
    labels = options.get("--label")
    if not labels:
        return options
    kept = {k: v for k, v in labels.items() if k not in EDGE_LABELS}
    cleaned = dict(options)
    if kept:
        cleaned["--label"] = kept
    else:
        cleaned.pop("--label")
    return cleaned


def run_options(inputs: ContainerInputs, launch: LaunchContext) -> RunOptions:
    """The normalized run flags of one container, without the edge labels."""
    source = f"container {inputs.name}"
    options = merge(
        fold(_edge_pairs(inputs, launch), source=source), inputs.params.options
    )
    options = merge(options, fold(_mount_pairs(inputs, launch, options), source=source))
    options = _without_edge_labels(options)
    options["--env"] = dict(inputs.env)
    options["--name"] = [inputs.name]
    return options


def container_spec(
    inputs: ContainerInputs, launch: LaunchContext, *, image_id: str | None
) -> ContainerSpec:
    """The frozen spec of one driver container, labels and hash included."""
    options = run_options(inputs, launch)
    digest = spec_hash(
        image=inputs.image,
        image_id=image_id,
        options=options,
        command=inputs.command,
    )
    labels = {LABEL_TWIN: inputs.twin_uuid}
    if inputs.service is not None:
        labels[LABEL_SERVICE] = inputs.service
    labels[LABEL_SPEC_HASH] = digest
    labels[LABEL_CREATED_BY] = f"{PRODUCT}/{launch.version}"
    labels[LABEL_FINGERPRINT] = launch.fingerprint
    return ContainerSpec(
        name=inputs.name,
        image=inputs.image,
        twin_uuid=inputs.twin_uuid,
        service=inputs.service,
        command=inputs.command,
        options=options,
        labels=labels,
        spec_hash=digest,
    )
