"""Desired driver containers, from the example environment and edge cases.

The example environment is the shared fixture
``example-environment.json`` (a realistic backend answer, ``<FP>`` standing
for this edge's fingerprint), embedded here without its prose keys so the
tests need nothing outside the repository. Its ``expected_on_this_edge``
is what the first three tests assert.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from edge_core.model.desired import (
    DriverContext,
    LaunchContext,
    build_driver_specs,
    twin_documents,
)
from edge_core.model.failures import (
    TITLE_ASSET_UNAVAILABLE,
    TITLE_NO_ASSET,
    TITLE_NO_DRIVERS,
    TITLE_NO_IMAGE,
    TITLE_RUN_FAILED,
)
from edge_core.model.linkage import resolve_topology
from edge_core.model.spec import ContainerSpec

FP = "lab-pc-0123456789ab"
ARM = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
WRIST_CAM = "c41d7e2a-0b3f-4a9e-8d6c-5f1e2a3b4c5d"
OVERHEAD_CAM = "0d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a"
GO2 = "3e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b"
CONVEYOR = "8c7b6a59-4d3e-4f2a-9b1c-0d9e8f7a6b5c"
LINUX_X86 = ("linux-x86_64", "linux")
JETSON = ("linux-aarch64-jetson", "linux-aarch64", "linux")
CONFIG = "/home/pi/.cyberwave"

EXAMPLE_ENVIRONMENT: dict[str, Any] = {
    "environment": {
        "uuid": "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
        "name": "Assembly cell 2",
        "workspace_uuid": "0c9f4d2e-1b7a-4e55-9a3c-6f2d8b1e7c44",
    },
    "twins": [
        {
            "uuid": "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13",
            "name": "SO-101 left arm",
            "description": "",
            "slug": "so-101-left-arm",
            "asset_uuid": "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b",
            "environment_uuid": "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
            "created_at": "2026-10-02T09:14:07.511Z",
            "updated_at": "2026-11-28T16:40:51.023Z",
            "position_x": 0.42,
            "position_y": -0.1,
            "position_z": 0.0,
            "rotation_w": 1.0,
            "rotation_x": 0.0,
            "rotation_y": 0.0,
            "rotation_z": 0.0,
            "scale_x": 1.0,
            "scale_y": 1.0,
            "scale_z": 1.0,
            "joint_states": {
                "shoulder_pan": 0.0,
                "shoulder_lift": 0.12,
                "elbow_flex": -0.3,
                "wrist_flex": 0.0,
                "wrist_roll": 0.0,
                "gripper": 0.02,
            },
            "attach_to_twin_uuid": None,
            "child_twin_uuids": ["c41d7e2a-0b3f-4a9e-8d6c-5f1e2a3b4c5d"],
            "fixed_base": True,
            "visibility": "private",
            "metadata": {
                "edge_fingerprint": "<FP>",
                "edge_configs": {
                    "camera_config": {
                        "camera_id": "wrist",
                        "source": "/dev/video0",
                        "fps": 15,
                        "resolution": "VGA",
                        "camera_type": "cv2",
                    }
                },
                "drivers": {
                    "default": {
                        "docker_image": "cyberwaveos/so101-driver",
                        "version": "0.0.1",
                        "params": [
                            "--device",
                            "/dev/ttyACM0",
                            "-e",
                            "SO101_CALIBRATION=auto",
                        ],
                    },
                    "darwin-arm64": {
                        "docker_image": "cyberwaveos/so101-driver:macos",
                        "params": [
                            "-e",
                            "CYBERWAVE_SERIAL_BRIDGE_URL=tcp://host.docker.internal:22001",
                        ],
                    },
                },
            },
        },
        {
            "uuid": "c41d7e2a-0b3f-4a9e-8d6c-5f1e2a3b4c5d",
            "name": "Wrist camera",
            "asset_uuid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            "environment_uuid": "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
            "attach_to_twin_uuid": "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13",
            "attach_to_link": "gripper_link",
            "attach_offset_x": 0.0,
            "attach_offset_y": 0.02,
            "attach_offset_z": 0.05,
            "metadata": {"edge_fingerprint": "<FP>"},
        },
        {
            "uuid": "0d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a",
            "name": "Overhead camera",
            "asset_uuid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            "environment_uuid": "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
            "attach_to_twin_uuid": None,
            "metadata": {
                "edge_configs": {
                    "edge_fingerprint": "<FP>",
                    "camera_config": {
                        "camera_id": "overhead",
                        "source": "rtsp://user:pass@192.168.1.20/stream",
                        "fps": 10,
                        "resolution": "HD",
                        "camera_type": "cv2",
                    },
                }
            },
        },
        {
            "uuid": "3e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b",
            "name": "Go2 quadruped",
            "asset_uuid": "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b",
            "environment_uuid": "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
            "metadata": {
                "edge_fingerprint": "<FP>",
                "drivers": {
                    "linux-aarch64-jetson": {
                        "services": [
                            {
                                "image": "cyberwaveos/go2-ros2-driver:jetson-humble",
                                "name": "driver",
                                "command": [
                                    "ros2",
                                    "launch",
                                    "cyberwave_go2_driver",
                                    "robot_driver.launch.py",
                                ],
                            },
                            {
                                "image": "cyberwaveos/ros2-slam:jetson-humble",
                                "name": "slam",
                                "env": {"SLAM_MODE": "mapping"},
                            },
                            {
                                "image": "cyberwaveos/ros2-elevation-mapping:jetson-humble",  # noqa: E501
                                "name": "elevation",
                                "prefer_gpu": True,
                                "gpu": "device=0",
                            },
                        ],
                        "shared_env": {
                            "ROS_DOMAIN_ID": "0",
                            "CYBERWAVE_MAP_DIR": "/data",
                        },
                        "shared_params": ["--network", "host", "-v", "/data:/data"],
                    },
                    "default": {
                        "docker_image": "cyberwaveos/go2-ros2-driver",
                        "prefer_gpu": True,
                    },
                },
            },
        },
        {
            "uuid": "8c7b6a59-4d3e-4f2a-9b1c-0d9e8f7a6b5c",
            "name": "Conveyor (another edge)",
            "asset_uuid": "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b",
            "environment_uuid": "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90",
            "metadata": {
                "edge_fingerprint": "line-pc-4b8e1f0a9c2d",
                "drivers": {
                    "default": {"docker_image": "cyberwaveos/conveyor-driver:1.2.0"}
                },
            },
        },
    ],
    "assets": [
        {
            "uuid": "e2d1c0b9-8a7f-4e6d-9c5b-4a3f2e1d0c9b",
            "name": "SO-101",
            "registry_id": "the-robot-studio/so101",
            "visibility": "public",
            "metadata": {
                "drivers": {"default": {"docker_image": "cyberwaveos/so101-driver"}}
            },
            "capabilities": {"can_grip": True, "sensors": []},
        },
        {
            "uuid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            "name": "Standard USB camera",
            "registry_id": "cyberwave/standard-cam",
            "visibility": "public",
            "universal_schema": {
                "sensors": [
                    {
                        "id": "rgb",
                        "type": "rgb",
                        "parameters": {"width": 640, "height": 480},
                    }
                ]
            },
            "capabilities": {"sensors": [{"id": "rgb", "type": "rgb"}]},
            "metadata": {
                "drivers": {
                    "default": {
                        "docker_image": "cyberwaveos/camera-driver",
                        "params": ["--device", "/dev/video0"],
                    }
                }
            },
        },
        {
            "uuid": "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b",
            "name": "Unitree Go2",
            "registry_id": "unitree/go2",
            "visibility": "public",
            "metadata": {},
            "capabilities": {
                "sensors": [
                    {"id": "front_cam", "type": "rgb"},
                    {"id": "lidar", "type": "lidar"},
                ]
            },
        },
    ],
}

CTX = DriverContext(token="cw_token", base_url="https://api.cyberwave.com")
LAUNCH = LaunchContext(config_dir=CONFIG, version="0.1.0", fingerprint=FP)


def example() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    data = json.loads(json.dumps(EXAMPLE_ENVIRONMENT).replace("<FP>", FP))
    return data["twins"], {asset["uuid"]: asset for asset in data["assets"]}


def build(
    twins: list[dict[str, Any]] | None = None,
    assets: dict[str, dict[str, Any]] | None = None,
    **kwargs: Any,
) -> Any:
    example_twins, example_assets = example()
    kwargs.setdefault("profile_keys", LINUX_X86)
    kwargs.setdefault("ctx", CTX)
    kwargs.setdefault("launch", LAUNCH)
    kwargs.setdefault("twin_json_present", lambda uuid: True)
    return build_driver_specs(
        twins=example_twins if twins is None else twins,
        assets_by_uuid=example_assets if assets is None else assets,
        **kwargs,
    )


def by_name(specs: tuple[ContainerSpec, ...]) -> dict[str, ContainerSpec]:
    return {spec.name: spec for spec in specs}


def test_example_environment_on_linux() -> None:
    """The example gives exactly the arm, the overhead camera and the Go2 default."""
    desired = build()
    assert desired.failures == ()
    specs = by_name(desired.specs)
    assert list(specs) == [
        "cyberwave-driver-7f3c2a10",
        "cyberwave-driver-0d6e5f4a",
        "cyberwave-driver-3e2d1c0b",
    ]

    arm = specs["cyberwave-driver-7f3c2a10"]
    assert arm.image == "cyberwaveos/so101-driver"
    assert arm.environment["CYBERWAVE_CHILD_TWIN_UUIDS"] == WRIST_CAM
    assert arm.environment["SO101_CALIBRATION"] == "auto"
    assert arm.options["--device"] == ["/dev/ttyACM0"]

    overhead = specs["cyberwave-driver-0d6e5f4a"]
    assert overhead.image == "cyberwaveos/camera-driver"
    assert overhead.options["--device"] == ["/dev/video0"]
    assert "CYBERWAVE_CHILD_TWIN_UUIDS" not in overhead.environment

    go2 = specs["cyberwave-driver-3e2d1c0b"]
    assert go2.image == "cyberwaveos/go2-ros2-driver"
    assert go2.service is None and go2.command == ()
    assert desired.profiles == {ARM: "default", OVERHEAD_CAM: "default", GO2: "default"}


def test_example_environment_leaves_out_child_and_other_edge() -> None:
    """The wrist camera and the other edge's conveyor get no container."""
    desired = build()
    twins = {spec.twin_uuid for spec in desired.specs}
    assert WRIST_CAM not in twins and CONVEYOR not in twins
    assert WRIST_CAM in desired.topology.no_driver
    assert CONVEYOR not in {t.uuid for t in desired.topology.linked}


def test_example_environment_on_jetson() -> None:
    """On a Jetson the Go2 runs its three services with their own settings."""
    desired = build(profile_keys=JETSON, launch=replace(LAUNCH, jetson=True))
    assert desired.failures == ()
    specs = by_name(desired.specs)
    assert list(specs) == [
        "cyberwave-driver-7f3c2a10",
        "cyberwave-driver-0d6e5f4a",
        "cyberwave-driver-3e2d1c0b-driver",
        "cyberwave-driver-3e2d1c0b-slam",
        "cyberwave-driver-3e2d1c0b-elevation",
    ]
    driver = specs["cyberwave-driver-3e2d1c0b-driver"]
    slam = specs["cyberwave-driver-3e2d1c0b-slam"]
    elevation = specs["cyberwave-driver-3e2d1c0b-elevation"]
    assert driver.image == "cyberwaveos/go2-ros2-driver:jetson-humble"
    assert driver.command == (
        "ros2",
        "launch",
        "cyberwave_go2_driver",
        "robot_driver.launch.py",
    )
    assert [s.service for s in (driver, slam, elevation)] == [
        "driver",
        "slam",
        "elevation",
    ]
    for spec in (driver, slam, elevation):
        assert spec.labels["io.cyberwave.edge.service"] == spec.service
        assert spec.labels["io.cyberwave.edge.twin"] == GO2
        assert spec.environment["ROS_DOMAIN_ID"] == "0"
        assert spec.environment["CYBERWAVE_MAP_DIR"] == "/data"
        assert spec.environment["CYBERWAVE_TWIN_UUID"] == GO2
        assert spec.options["--network"] == ["host"]
        assert "/data:/data" in spec.options["--volume"]
    assert slam.environment["SLAM_MODE"] == "mapping"
    assert "SLAM_MODE" not in driver.environment
    assert desired.profiles[GO2] == "linux-aarch64-jetson"
    assert desired.image_fallbacks == {}


def test_gpu_only_when_available() -> None:
    """prefer_gpu adds --gpus only when the host's default runtime is nvidia."""
    jetson = replace(LAUNCH, jetson=True)
    without = by_name(build(profile_keys=JETSON, launch=jetson).specs)
    assert "--gpus" not in without["cyberwave-driver-3e2d1c0b-elevation"].options
    gpu = replace(jetson, gpu_available=True)
    specs = by_name(build(profile_keys=JETSON, launch=gpu).specs)
    assert specs["cyberwave-driver-3e2d1c0b-elevation"].options["--gpus"] == [
        "device=0"
    ]
    assert "--gpus" not in specs["cyberwave-driver-3e2d1c0b-slam"].options
    default = by_name(build(launch=replace(LAUNCH, gpu_available=True)).specs)
    assert default["cyberwave-driver-3e2d1c0b"].options["--gpus"] == ["all"]


def test_environment_tag_applied_in_dev() -> None:
    """In a non-production environment untagged images get the environment tag."""
    dev = replace(CTX, environment="dev", is_production=False)
    specs = by_name(build(ctx=dev).specs)
    assert specs["cyberwave-driver-7f3c2a10"].image == "cyberwaveos/so101-driver:dev"
    assert (
        specs["cyberwave-driver-7f3c2a10"].environment["CYBERWAVE_ENVIRONMENT"] == "dev"
    )


def test_jetson_rewrite_and_fallback() -> None:
    """On Jetson a tagged image becomes jetson-<tag>, with the original as fallback."""
    dev = replace(CTX, environment="dev", is_production=False)
    jetson = replace(LAUNCH, jetson=True)
    desired = build(ctx=dev, launch=jetson)
    arm = by_name(desired.specs)["cyberwave-driver-7f3c2a10"]
    assert arm.image == "cyberwaveos/so101-driver:jetson-dev"
    assert desired.image_fallbacks["cyberwaveos/so101-driver:jetson-dev"] == (
        "cyberwaveos/so101-driver:dev"
    )
    fallback = build(ctx=dev, launch=jetson, image_substitutes=desired.image_fallbacks)
    arm_fallback = by_name(fallback.specs)["cyberwave-driver-7f3c2a10"]
    assert arm_fallback.image == "cyberwaveos/so101-driver:dev"


def test_driver_override_replaces_image_and_clears_params() -> None:
    """An override swaps the image and drops the profile's params."""
    desired = build(driver_overrides={ARM: "cyberwaveos/so101-driver:local"})
    arm = by_name(desired.specs)["cyberwave-driver-7f3c2a10"]
    assert arm.image == "cyberwaveos/so101-driver:local"
    assert "--device" not in arm.options
    assert "SO101_CALIBRATION" not in arm.environment


def test_override_supplies_a_missing_image() -> None:
    """An override lets a profile without docker_image run."""
    twins = [twin_with({"default": {"params": []}})]
    desired = build(twins, ASSETS, driver_overrides={"t-1": "acme/driver:local"})
    assert [s.image for s in desired.specs] == ["acme/driver:local"]


def test_image_ids_feed_the_hash() -> None:
    """A different local image id changes the spec hash, nothing else does."""
    first = by_name(build().specs)
    second = by_name(build(image_ids={"cyberwaveos/so101-driver": "sha256:1"}).specs)
    assert first["cyberwave-driver-7f3c2a10"].spec_hash != (
        second["cyberwave-driver-7f3c2a10"].spec_hash
    )
    assert first["cyberwave-driver-0d6e5f4a"].spec_hash == (
        second["cyberwave-driver-0d6e5f4a"].spec_hash
    )


def test_build_is_deterministic() -> None:
    """Two builds from the same inputs give the same specs and hashes."""
    assert [s.spec_hash for s in build().specs] == [s.spec_hash for s in build().specs]


def test_twin_json_presence_as_a_set() -> None:
    """twin_json_present may be a set of uuids; absent twins get no mount or path."""
    specs = by_name(build(twin_json_present={ARM}).specs)
    arm = specs["cyberwave-driver-7f3c2a10"]
    overhead = specs["cyberwave-driver-0d6e5f4a"]
    assert arm.environment["CYBERWAVE_TWIN_JSON_FILE"] == f"/app/{ARM}.json"
    assert f"{CONFIG}/{ARM}.json:/app/{ARM}.json:rw" in arm.options["--volume"]
    assert "CYBERWAVE_TWIN_JSON_FILE" not in overhead.environment
    assert overhead.options["--volume"] == [f"{CONFIG}:/app/.cyberwave:ro"]


def test_fingerprint_label_and_explicit_fingerprint() -> None:
    """Specs carry the fingerprint label; an explicit fingerprint drives linkage."""
    desired = build()
    assert {s.labels["io.cyberwave.edge.fingerprint"] for s in desired.specs} == {FP}
    assert build(fingerprint="someone-else").specs == ()


def test_video_devices_reach_the_driver() -> None:
    """A twin's camera device is injected and pulls in /dev/v4l for v4l paths."""
    launch = replace(LAUNCH, v4l_exists=True)
    device = "/dev/v4l/by-id/usb-cam-video-index0"
    specs = by_name(build(launch=launch, video_devices={ARM: device}).specs)
    arm = specs["cyberwave-driver-7f3c2a10"]
    assert arm.environment["CYBERWAVE_METADATA_VIDEO_DEVICE"] == device
    assert "/dev/v4l:/dev/v4l:ro" in arm.options["--volume"]
    overhead = specs["cyberwave-driver-0d6e5f4a"]
    assert "/dev/v4l:/dev/v4l:ro" in overhead.options["--volume"]


def test_images_listed_once_in_order() -> None:
    """The images to pull are listed once each, in spec order."""
    desired = build()
    assert desired.images == (
        "cyberwaveos/so101-driver",
        "cyberwaveos/camera-driver",
        "cyberwaveos/go2-ros2-driver",
    )


def test_twin_documents_for_linked_twins_with_assets() -> None:
    """Every linked twin with an asset, children included, gets a document."""
    twins, assets = example()
    documents = twin_documents(resolve_topology(twins, assets, FP), assets)
    assert list(documents) == [ARM, WRIST_CAM, OVERHEAD_CAM, GO2]
    assert documents[WRIST_CAM]["asset"]["registry_id"] == "cyberwave/standard-cam"
    assert documents[ARM]["uuid"] == ARM


# Failures: each twin below is linked and has exactly one problem.

ASSET_UUID = "asset-1"
ASSETS: dict[str, dict[str, Any]] = {
    ASSET_UUID: {"uuid": ASSET_UUID, "registry_id": "acme/robot", "metadata": {}}
}


def twin_with(drivers: Any, uuid: str = "t-1", **fields: Any) -> dict[str, Any]:
    fields.setdefault("asset_uuid", ASSET_UUID)
    return {
        "uuid": uuid,
        "name": "Robot",
        "metadata": {"edge_fingerprint": FP, "drivers": drivers},
        **fields,
    }


@pytest.mark.parametrize(
    ("twin", "title", "fragment"),
    [
        (
            twin_with({"default": {"docker_image": "a"}}, asset_uuid=None),
            TITLE_NO_ASSET,
            "has no asset",
        ),
        (
            twin_with({"default": {"docker_image": "a"}}, asset_uuid="gone"),
            TITLE_ASSET_UNAVAILABLE,
            "asset gone",
        ),
        (twin_with(None), TITLE_NO_DRIVERS, "tried linux-x86_64, linux, default"),
        (
            twin_with({"darwin-arm64": {"docker_image": "a"}}),
            TITLE_NO_DRIVERS,
            "metadata.drivers",
        ),
        (twin_with({"default": {"params": []}}), TITLE_NO_IMAGE, "has no docker_image"),
        (
            twin_with({"default": {"services": [{"name": "a"}]}}),
            TITLE_NO_IMAGE,
            "field 'image'",
        ),
        (
            twin_with({"default": {"docker_image": "a", "params": ["-e", "X"]}}),
            TITLE_RUN_FAILED,
            "'-e'",
        ),
        (
            twin_with({"default": {"docker_image": "a", "params": ["--bogus"]}}),
            TITLE_RUN_FAILED,
            "--bogus",
        ),
        (twin_with({"default": {"docker_image": 5}}), TITLE_RUN_FAILED, "docker_image"),
        (
            twin_with(
                {
                    "default": {
                        "services": [{"name": "s", "image": "i", "params": ["-e", "X"]}]
                    }
                }
            ),
            TITLE_RUN_FAILED,
            "service 's' params",
        ),
    ],
)
def test_failures(twin: dict[str, Any], title: str, fragment: str) -> None:
    """Each problem gives its alert title and a reason; other twins still run."""
    healthy = twin_with({"default": {"docker_image": "acme/ok"}}, uuid="t-ok")
    desired = build([twin, healthy], ASSETS)
    assert [s.name for s in desired.specs] == ["cyberwave-driver-t-ok"]
    (failure,) = desired.failures
    assert failure.twin_uuid == "t-1"
    assert failure.title == title
    assert "t-1" in failure.reason
    assert fragment in failure.reason


def test_one_bad_service_fails_the_whole_twin() -> None:
    """A twin with one bad service gets no containers at all."""
    drivers = {
        "default": {
            "services": [
                {"name": "ok", "image": "acme/ok"},
                {"name": "bad", "image": "acme/bad", "params": ["--bogus"]},
            ]
        }
    }
    desired = build([twin_with(drivers)], ASSETS)
    assert desired.specs == ()
    assert desired.failures[0].title == TITLE_RUN_FAILED


def test_service_dependencies_and_settings() -> None:
    """depends_on, restart, stop timeout, privileged and restart floor apply."""
    drivers = {
        "default": {
            "services": [
                {
                    "name": "db",
                    "image": "acme/db",
                    "privileged": False,
                    "restart": "no",
                },
                {
                    "name": "app",
                    "image": "acme/app",
                    "depends_on": {"db": {"condition": "service_healthy"}},
                    "stop_timeout_s": 30,
                    "min_restart_interval_s": 60,
                    "host_env_file": "app.env",
                },
            ],
            "shared_params": ["-e", "SHARED=1"],
        }
    }
    desired = build(
        [twin_with(drivers)], ASSETS, launch=replace(LAUNCH, privileged=True)
    )
    specs = by_name(desired.specs)
    db, app = specs["cyberwave-driver-t-1-db"], specs["cyberwave-driver-t-1-app"]
    assert "--privileged" not in db.options
    assert db.options["--restart"] == ["no"]
    assert app.options["--privileged"] is True
    assert app.options["--stop-timeout"] == ["30"]
    assert app.options["--label"] == {"cyberwave.min_restart_interval_s": "60"}
    assert app.options["--env-file"] == [f"{CONFIG}/app.env"]
    assert app.environment["SHARED"] == "1" == db.environment["SHARED"]
    assert desired.dependencies == {
        "cyberwave-driver-t-1-app": (("cyberwave-driver-t-1-db", "service_healthy"),)
    }


def test_privileged_setting_for_single_container() -> None:
    """CYBERWAVE_DRIVER_PRIVILEGED off leaves --privileged out of single drivers."""
    specs = build(launch=replace(LAUNCH, privileged=False)).specs
    assert all("--privileged" not in spec.options for spec in specs)


def test_child_registry_profile_chosen_for_parent() -> None:
    """A parent with a child camera uses the profile named by its registry id."""
    twins, assets = example()
    twins[0]["metadata"]["drivers"]["cyberwave/standard-cam"] = {
        "docker_image": "cyberwaveos/so101-with-cam"
    }
    desired = build(twins, assets)
    assert by_name(desired.specs)["cyberwave-driver-7f3c2a10"].image == (
        "cyberwaveos/so101-with-cam"
    )
    assert desired.profiles[ARM] == "cyberwave/standard-cam"


def test_junk_twins_and_assets_do_not_crash() -> None:
    """Malformed twins and assets are skipped or reported, never raised."""
    twins: list[Any] = [None, 3, {"uuid": None}, twin_with({"default": "x"})]
    junk_assets: dict[str, Any] = {ASSET_UUID: ["not", "an", "asset"]}
    desired = build(twins, junk_assets)
    assert desired.specs == ()
    assert [f.title for f in desired.failures] == [TITLE_ASSET_UNAVAILABLE]


@pytest.mark.parametrize("order", [1, -1], ids=["listed-first", "listed-last"])
def test_twins_whose_uuids_start_alike_do_not_share_a_container(order: int) -> None:
    """Two twins wanting cyberwave-driver-0eaa9902: the smaller uuid keeps
    it however the backend orders them; the other fails, naming both."""
    first = "0eaa9902-65a7-4c3e-8f0a-2d7b8e4c1a90"
    second = "0eaa9902-bb78-4d1e-9f8a-7b6c5d4e3f2a"
    drivers = {"default": {"docker_image": "acme/driver:1"}}
    twins = [twin_with(drivers, uuid=first), twin_with(drivers, uuid=second)]

    desired = build(twins[::order], ASSETS)

    assert [(s.name, s.twin_uuid) for s in desired.specs] == [
        ("cyberwave-driver-0eaa9902", first)
    ]
    [failure] = desired.failures
    assert failure.twin_uuid == second
    assert failure.title == TITLE_RUN_FAILED
    assert "cyberwave-driver-0eaa9902" in failure.reason and first in failure.reason


# -- two twins whose uuids start alike -------------------------------------------

ARM_LOOKALIKE = "7f3c2a10-ffff-4fff-8fff-ffffffffffff"
ARM_NAME = "cyberwave-driver-7f3c2a10"


def _with_lookalike() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The example plus a copy of the arm whose uuid starts like the arm's,
    listed first."""
    twins, assets = example()
    [arm] = [twin for twin in twins if twin["uuid"] == ARM]
    lookalike = json.loads(json.dumps(arm))
    lookalike["uuid"] = ARM_LOOKALIKE
    return [lookalike, *twins], assets


def _arm_owner(desired: Any) -> str:
    return str(by_name(desired.specs)[ARM_NAME].twin_uuid)


def test_a_shared_name_goes_to_the_smaller_uuid_when_no_container_has_it() -> None:
    """Whatever the listing order, the twin with the smaller uuid gets the
    name and the other fails with a reason naming it."""
    twins, assets = _with_lookalike()

    for order in (twins, list(reversed(twins))):
        desired = build(order, assets)
        assert _arm_owner(desired) == ARM
        [failure] = [f for f in desired.failures if f.twin_uuid == ARM_LOOKALIKE]
        assert f"already the driver of twin {ARM}" in failure.reason


def test_a_shared_name_stays_with_the_twin_whose_container_has_it() -> None:
    """The bigger uuid's container runs already: linking the smaller twin
    does not hand that container over."""
    twins, assets = _with_lookalike()

    desired = build(twins, assets, name_holders={ARM_NAME: ARM_LOOKALIKE})

    assert _arm_owner(desired) == ARM_LOOKALIKE
    [failure] = [f for f in desired.failures if f.twin_uuid == ARM]
    assert f"already the driver of twin {ARM_LOOKALIKE}" in failure.reason


def test_a_shared_name_held_by_an_unlinked_twin_is_not_taken() -> None:
    """The container with the name serves a twin no longer linked (an
    orphan, never touched): the linked twin that wants the name fails and
    is told how to free it."""
    twins, assets = example()
    orphan_twin = "7f3c2a10-0000-4000-8000-000000000000"

    desired = build(twins, assets, name_holders={ARM_NAME: orphan_twin})

    assert ARM_NAME not in by_name(desired.specs)
    [failure] = [f for f in desired.failures if f.twin_uuid == ARM]
    assert f"held by the container of twin {orphan_twin}" in failure.reason
    assert f"docker rm -f {ARM_NAME}" in failure.reason
