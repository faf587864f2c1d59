"""Run options, labels and spec hash of one driver container (protocol.md 4.4, 4.6)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edge_core.model.params import parse_driver_params
from edge_core.model.runargs import (
    ContainerInputs,
    LaunchContext,
    container_spec,
    run_options,
)

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
LAUNCH = LaunchContext(
    config_dir="/home/pi/.cyberwave/", version="1.2.3", fingerprint="fp-1"
)


def inputs(params: list[str] | None = None, **fields: Any) -> ContainerInputs:
    fields.setdefault("name", "cyberwave-driver-7f3c2a10")
    fields.setdefault("twin_uuid", TWIN)
    fields.setdefault("image", "cyberwaveos/so101-driver:dev")
    fields.setdefault("env", {"CYBERWAVE_TWIN_UUID": TWIN})
    return ContainerInputs(
        params=parse_driver_params(params or [], source="test"), **fields
    )


def test_default_options() -> None:
    """A plain driver gets the edge flags, log rotation, host network and mounts."""
    options = run_options(inputs(), LAUNCH)
    assert options == {
        "--init": True,
        "--stop-timeout": ["5"],
        "--restart": ["unless-stopped"],
        "--privileged": True,
        "--log-driver": ["json-file"],
        "--log-opt": ["max-file=3", "max-size=10m"],
        "--network": ["host"],
        "--volume": ["/home/pi/.cyberwave:/app/.cyberwave:ro"],
        "--env": {"CYBERWAVE_TWIN_UUID": TWIN},
        "--name": ["cyberwave-driver-7f3c2a10"],
    }


def test_twin_json_mount_when_present() -> None:
    """The twin file is mounted read-write at /app/<uuid>.json when it exists."""
    options = run_options(inputs(twin_json_present=True), LAUNCH)
    assert f"/home/pi/.cyberwave/{TWIN}.json:/app/{TWIN}.json:rw" in options["--volume"]


def test_not_privileged_when_disabled() -> None:
    """privileged False leaves --privileged out."""
    assert "--privileged" not in run_options(inputs(privileged=False), LAUNCH)


def test_params_network_replaces_host_network() -> None:
    """A --network in params means the edge adds none of its own."""
    options = run_options(inputs(["--network", "local"]), LAUNCH)
    assert options["--network"] == ["local"]


def test_non_linux_gets_host_gateway() -> None:
    """Off Linux the driver gets host.docker.internal unless params add hosts."""
    mac = replace(LAUNCH, host_is_linux=False)
    options = run_options(inputs(), mac)
    assert "--network" not in options
    assert options["--add-host"] == ["host.docker.internal:host-gateway"]
    own = run_options(inputs(["--add-host", "robot:10.0.0.2"]), mac)
    assert own["--add-host"] == ["robot:10.0.0.2"]


def test_log_options() -> None:
    """Log settings are used; off drops them; params --log-driver or pinned opts win."""
    custom = run_options(
        inputs(), replace(LAUNCH, log_max_size="50m", log_max_file="5")
    )
    assert custom["--log-opt"] == ["max-file=5", "max-size=50m"]
    off = run_options(inputs(), replace(LAUNCH, log_max_size="off"))
    assert "--log-driver" not in off and "--log-opt" not in off
    own_driver = run_options(inputs(["--log-driver", "journald"]), LAUNCH)
    assert own_driver["--log-driver"] == ["journald"]
    assert "--log-opt" not in own_driver
    pinned = run_options(inputs(["--log-opt", "max-size=1g"]), LAUNCH)
    assert pinned["--log-opt"] == ["max-file=3", "max-size=1g"]


def test_params_can_override_single_edge_flags() -> None:
    """Params come after the edge flags, so their restart policy wins."""
    options = run_options(inputs(["--restart", "on-failure"]), LAUNCH)
    assert options["--restart"] == ["on-failure"]


def test_v4l_mount_for_camera_images() -> None:
    """Camera images get /dev/v4l read-only when it exists and is not mounted."""
    v4l = replace(LAUNCH, v4l_exists=True)
    camera = inputs(image="cyberwaveos/camera-driver:dev")
    assert "/dev/v4l:/dev/v4l:ro" in run_options(camera, v4l)["--volume"]
    assert "/dev/v4l:/dev/v4l:ro" not in run_options(camera, LAUNCH)["--volume"]
    assert "/dev/v4l:/dev/v4l:ro" not in run_options(inputs(), v4l)["--volume"]
    mounted = inputs(["-v", "/dev/v4l:/dev/v4l"], image="acme/camera_driver")
    assert run_options(mounted, v4l)["--volume"] == [
        "/dev/v4l:/dev/v4l",
        "/home/pi/.cyberwave:/app/.cyberwave:ro",
    ]
    by_device = inputs(
        env={"CYBERWAVE_METADATA_VIDEO_DEVICE": "/dev/v4l/by-id/usb-cam-index0"}
    )
    assert "/dev/v4l:/dev/v4l:ro" in run_options(by_device, v4l)["--volume"]


def test_service_extras() -> None:
    """GPU, env file, restart floor label and service settings reach the options."""
    options = run_options(
        inputs(
            gpus="device=0",
            env_file="secrets/a.env",
            min_restart_interval_s=30,
            restart="no",
            stop_timeout_s=20,
        ),
        LAUNCH,
    )
    assert options["--gpus"] == ["device=0"]
    assert options["--env-file"] == ["/home/pi/.cyberwave/secrets/a.env"]
    assert options["--label"] == {"cyberwave.min_restart_interval_s": "30"}
    assert options["--restart"] == ["no"]
    assert options["--stop-timeout"] == ["20"]


def test_params_cannot_forge_edge_labels() -> None:
    """Edge labels written in params are dropped; other labels stay."""
    options = run_options(
        inputs(["-l", "io.cyberwave.edge.fingerprint=other", "-l", "team=x"]), LAUNCH
    )
    assert options["--label"] == {"team": "x"}


def test_spec_labels_and_hash() -> None:
    """The spec carries the edge labels, and its hash matches the label."""
    spec = container_spec(inputs(service="slam"), LAUNCH, image_id="sha256:abc")
    assert spec.labels == {
        "io.cyberwave.edge.twin": TWIN,
        "io.cyberwave.edge.service": "slam",
        "io.cyberwave.edge.spec-hash": spec.spec_hash,
        "io.cyberwave.edge.created-by": "cyberwave-edge-core/1.2.3",
        "io.cyberwave.edge.fingerprint": "fp-1",
    }
    assert spec.name == "cyberwave-driver-7f3c2a10"
    assert spec.image == "cyberwaveos/so101-driver:dev"
    assert len(spec.spec_hash) == 64


def test_spec_hash_depends_on_image_id_and_env_but_not_labels() -> None:
    """Image id and env change the hash; the version and fingerprint labels do not."""
    base = container_spec(inputs(), LAUNCH, image_id="sha256:abc")
    assert container_spec(inputs(), LAUNCH, image_id="sha256:def").spec_hash != (
        base.spec_hash
    )
    rotated = inputs(env={"CYBERWAVE_TWIN_UUID": TWIN, "CYBERWAVE_API_KEY": "cw_new"})
    assert container_spec(rotated, LAUNCH, image_id="sha256:abc").spec_hash != (
        base.spec_hash
    )
    relabelled = replace(LAUNCH, version="9.9.9", fingerprint="fp-2")
    assert container_spec(inputs(), relabelled, image_id="sha256:abc").spec_hash == (
        base.spec_hash
    )
