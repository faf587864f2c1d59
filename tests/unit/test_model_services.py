"""Reading a selected driver profile into its typed form."""

from __future__ import annotations

from typing import Any

import pytest

from edge_core.errors import DriverSpecError
from edge_core.model.services import (
    Dependency,
    MissingImageError,
    read_profile,
)

TWIN = "3e2d1c0b-9a8f"


def read(profile: dict[str, Any], key: str = "linux"):  # type: ignore[no-untyped-def]
    return read_profile(key, profile, twin_uuid=TWIN)


def test_single_container_profile() -> None:
    """docker_image, params, prefer_gpu and gpu are read in single mode."""
    profile = read(
        {
            "docker_image": " cyberwaveos/go2 ",
            "params": ["-e", "A=1"],
            "prefer_gpu": True,
            "gpu": 1,
            "version": "0.0.1",
        }
    )
    assert not profile.multi_service
    assert profile.image == "cyberwaveos/go2"
    assert profile.params == ["-e", "A=1"]
    assert profile.prefer_gpu is True
    assert profile.gpu == "1"


def test_single_profile_without_image() -> None:
    """A single profile without docker_image reads with image None."""
    profile = read({"params": []})
    assert profile.image is None
    assert profile.gpu == "all"


def test_services_profile() -> None:
    """Every service field is read, with defaults for the ones left out."""
    profile = read(
        {
            "services": [
                {
                    "name": "driver",
                    "image": "cyberwaveos/go2:humble",
                    "command": ["ros2", "launch"],
                    "env": {"A": 1, "B": True, "C": "x"},
                    "params": ["--device", "/dev/ttyUSB0"],
                    "restart": "on-failure",
                    "stop_timeout_s": 0,
                    "privileged": False,
                    "min_restart_interval_s": 30,
                    "host_env_file": "secrets/driver.env",
                },
                {
                    "name": "slam",
                    "image": "cyberwaveos/slam",
                    "depends_on": {"driver": {"condition": "service_healthy"}},
                },
                {"name": "nav", "image": "cyberwaveos/nav", "depends_on": ["slam"]},
            ],
            "shared_env": {"ROS_DOMAIN_ID": 0},
            "shared_params": ["--network", "host"],
        }
    )
    assert profile.multi_service
    driver, slam, nav = profile.services
    assert driver.command == ("ros2", "launch")
    assert driver.env == {"A": "1", "B": "true", "C": "x"}
    assert driver.params == ("--device", "/dev/ttyUSB0")
    assert (driver.restart, driver.stop_timeout_s, driver.privileged) == (
        "on-failure",
        0,
        False,
    )
    assert driver.min_restart_interval_s == 30
    assert driver.host_env_file == "secrets/driver.env"
    assert slam.depends_on == (Dependency("driver", "service_healthy"),)
    assert nav.depends_on == (Dependency("slam", "service_started"),)
    assert (slam.restart, slam.stop_timeout_s, slam.privileged) == (
        "unless-stopped",
        5,
        None,
    )
    assert profile.shared_env == {"ROS_DOMAIN_ID": "0"}
    assert profile.shared_params == ("--network", "host")


def test_service_without_image_is_missing_image() -> None:
    """A service without image raises MissingImageError naming the service."""
    with pytest.raises(MissingImageError, match="service 'slam'"):
        read({"services": [{"name": "slam"}]})


@pytest.mark.parametrize(
    ("services", "fragment"),
    [
        ([], "non-empty list"),
        ("driver", "non-empty list"),
        (["driver"], "services[0] is not an object"),
        ([{"image": "x"}], "'name'"),
        ([{"name": "bad name", "image": "x"}], "'name'"),
        ([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}], "used twice"),
        ([{"name": "a", "image": "x", "restart": "always"}], "'restart'"),
        ([{"name": "a", "image": "x", "stop_timeout_s": -1}], "'stop_timeout_s'"),
        ([{"name": "a", "image": "x", "stop_timeout_s": True}], "'stop_timeout_s'"),
        ([{"name": "a", "image": "x", "privileged": "yes"}], "'privileged'"),
        ([{"name": "a", "image": "x", "prefer_gpu": "yes"}], "'prefer_gpu'"),
        ([{"name": "a", "image": "x", "command": "run"}], "'command'"),
        ([{"name": "a", "image": "x", "env": ["A=1"]}], "'env'"),
        ([{"name": "a", "image": "x", "env": {"A": [1]}}], "'env.A'"),
        ([{"name": "a", "image": "x", "host_env_file": "/etc/x"}], "outside"),
        ([{"name": "a", "image": "x", "host_env_file": "../x"}], "outside"),
        ([{"name": "a", "image": "x", "depends_on": ["b"]}], "depends on 'b'"),
        ([{"name": "a", "image": "x", "depends_on": ["a"]}], "depends on 'a'"),
        ([{"name": "a", "image": "x", "depends_on": 3}], "'depends_on'"),
        (
            [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "x", "depends_on": {"a": {"condition": "up"}}},
            ],
            "condition 'up'",
        ),
    ],
)
def test_bad_services_are_refused(services: object, fragment: str) -> None:
    """Malformed services raise DriverSpecError naming twin, profile and field."""
    with pytest.raises(DriverSpecError) as caught:
        read({"services": services})
    message = str(caught.value)
    assert message.startswith(f"twin {TWIN} driver profile 'linux'")
    assert fragment in message


def test_bad_gpu_value_is_refused() -> None:
    """A gpu that is neither text nor a count is refused."""
    with pytest.raises(DriverSpecError, match="'gpu'"):
        read({"docker_image": "x", "gpu": [0]})
