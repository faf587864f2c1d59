"""Create, start, stop and remove real containers through the Docker adapter."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from edge_core.errors import ContainerError, DriverSpecError, RuntimeUnavailable
from edge_core.model.spec import LABEL_FINGERPRINT, LABEL_MIN_RESTART, LABEL_TWIN
from edge_core.runtime import ContainerState, DockerRuntime
from edge_core.runtime.errors import PRIVILEGED_FIX
from tests.support.docker_helpers import wait_exited
from tests.support.specs import TWIN, make_spec

pytestmark = pytest.mark.integration

SLEEP = ("sh", "-c", "echo INFO started; sleep 3600")
DRIVER_FLAGS = [
    "--detach",
    "--init",
    "--stop-timeout",
    "2",
    "--restart",
    "unless-stopped",
    "--log-driver",
    "json-file",
    "--log-opt",
    "max-size=10m",
    "--log-opt",
    "max-file=3",
    "--network",
    "host",
]


def test_driver_container_lifecycle(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    test_image: str,
    tmp_path: Path,
) -> None:
    """A driver-shaped spec gets its labels and host config, runs, stops, goes."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "twin.json").write_text("{}")
    name = f"cw-{fingerprint}-driver"
    spec = make_spec(
        name,
        image=test_image,
        command=SLEEP,
        params=["-e", "DRIVER_MODE=test"],
        extra=[
            *DRIVER_FLAGS,
            "-v",
            f"{config_dir}:/app/.cyberwave:ro",
            "-v",
            f"{config_dir / 'twin.json'}:/app/twin.json",
        ],
    )

    view = docker_runtime.create(spec, fingerprint=fingerprint)
    assert view.state is ContainerState.CREATED
    assert view.fingerprint == fingerprint
    assert view.twin_uuid == TWIN
    assert view.spec_hash == spec.spec_hash
    assert view.env["DRIVER_MODE"] == "test"

    attrs = docker_client.api.inspect_container(name)
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["Init"] is True
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "3", "max-size": "10m"},
    }
    assert sorted(host["Binds"]) == sorted(
        [
            f"{config_dir}:/app/.cyberwave:ro",
            f"{config_dir / 'twin.json'}:/app/twin.json",
        ]
    )
    assert attrs["Config"]["StopTimeout"] == 2
    assert attrs["Config"]["Labels"][LABEL_FINGERPRINT] == fingerprint

    docker_runtime.start(name, fingerprint=fingerprint)
    result = docker_runtime.probe(
        name, fingerprint=fingerprint, timeout=30, interval=0.2
    )
    assert result.ok, result.detail

    mounts = {
        m["Destination"]: m["RW"]
        for m in docker_client.api.inspect_container(name)["Mounts"]
    }
    assert mounts == {"/app/.cyberwave": False, "/app/twin.json": True}

    assert [v.name for v in docker_runtime.list_managed(fingerprint)] == [name]
    assert docker_runtime.stop(name, fingerprint=fingerprint, timeout=2)
    stopped = docker_runtime.inspect(name, fingerprint=fingerprint)
    assert stopped is not None and stopped.state is ContainerState.EXITED
    assert docker_runtime.remove(name, fingerprint=fingerprint)
    assert docker_runtime.inspect(name, fingerprint=fingerprint) is None
    assert docker_runtime.remove(name, fingerprint=fingerprint) is False
    assert docker_runtime.stop(name, fingerprint=fingerprint) is False


def test_create_refuses_an_existing_container(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Creating over an existing container of ours fails as docker_create_failed."""
    spec = make_spec(f"cw-{fingerprint}-twice", image=test_image, command=SLEEP)
    docker_runtime.create(spec, fingerprint=fingerprint)
    with pytest.raises(ContainerError) as caught:
        docker_runtime.create(spec, fingerprint=fingerprint)
    assert caught.value.phase == "docker_create_failed"
    assert "already exists" in str(caught.value)


def test_create_with_missing_image_is_image_missing(
    docker_runtime: DockerRuntime, fingerprint: str
) -> None:
    """A spec whose image is not on the host fails with phase image_missing."""
    spec = make_spec(f"cw-{fingerprint}-noimg", image="cw-test/absent:never")
    with pytest.raises(ContainerError) as caught:
        docker_runtime.create(spec, fingerprint=fingerprint)
    assert caught.value.phase == "image_missing"
    assert docker_runtime.list_managed(fingerprint) == []


def test_engine_refusal_at_create_names_the_value(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A runtime the engine does not have is refused with the engine's words."""
    spec = make_spec(
        f"cw-{fingerprint}-runtime",
        image=test_image,
        params=["--runtime", "cw-no-such-runtime"],
    )
    with pytest.raises(ContainerError) as caught:
        docker_runtime.create(spec, fingerprint=fingerprint)
    assert caught.value.phase == "docker_create_failed"
    assert "cw-no-such-runtime" in str(caught.value)


def test_spec_for_another_fingerprint_is_refused(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """A spec labelled for another edge is never created under ours."""
    spec = make_spec(
        f"cw-{fingerprint}-mislabelled",
        image=test_image,
        labels={LABEL_FINGERPRINT: "someone-else"},
    )
    with pytest.raises(DriverSpecError, match="someone-else"):
        docker_runtime.create(spec, fingerprint=fingerprint)


def test_privileged_refusal_names_the_setting(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """This engine refuses --privileged; the error names CYBERWAVE_DRIVER_PRIVILEGED."""
    name = f"cw-{fingerprint}-privileged"
    spec = make_spec(name, image=test_image, command=SLEEP, extra=["--privileged"])
    docker_runtime.create(spec, fingerprint=fingerprint)
    with pytest.raises(ContainerError) as caught:
        docker_runtime.start(name, fingerprint=fingerprint)
    assert caught.value.phase == "docker_start_failed"
    assert PRIVILEGED_FIX in str(caught.value)


def test_update_restart_policy(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    test_image: str,
) -> None:
    """The restart policy of our container can be switched to no."""
    name = f"cw-{fingerprint}-policy"
    spec = make_spec(
        name, image=test_image, command=SLEEP, extra=["--restart", "always"]
    )
    docker_runtime.create(spec, fingerprint=fingerprint)
    docker_runtime.update_restart_policy(name, "no", fingerprint=fingerprint)
    policy = docker_client.api.inspect_container(name)["HostConfig"]["RestartPolicy"]
    assert policy["Name"] == "no"


def test_prune_removes_only_our_stopped_containers(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Pruning removes exited containers but keeps running and restart-floor ones."""
    done = f"cw-{fingerprint}-done"
    floor = f"cw-{fingerprint}-floor"
    running = f"cw-{fingerprint}-running"
    docker_runtime.create(
        make_spec(done, image=test_image, command=("true",)), fingerprint=fingerprint
    )
    docker_runtime.create(
        make_spec(
            floor,
            image=test_image,
            command=("true",),
            labels={LABEL_MIN_RESTART: "60"},
        ),
        fingerprint=fingerprint,
    )
    docker_runtime.create(
        make_spec(running, image=test_image, command=SLEEP), fingerprint=fingerprint
    )
    for name in (done, floor, running):
        docker_runtime.start(name, fingerprint=fingerprint)
    for name in (done, floor):
        wait_exited(docker_runtime, name, fingerprint, interval=0.2)

    assert docker_runtime.prune_stopped(fingerprint) == [done]
    assert sorted(v.name for v in docker_runtime.list_managed(fingerprint)) == [
        floor,
        running,
    ]


def test_list_managed_sees_only_our_fingerprint(
    docker_runtime: DockerRuntime, fingerprint: str, test_image: str
) -> None:
    """Containers of another fingerprint never appear in our list."""
    other = f"{fingerprint}-other"
    try:
        docker_runtime.create(
            make_spec(f"cw-{fingerprint}-mine", image=test_image),
            fingerprint=fingerprint,
        )
        docker_runtime.create(
            make_spec(f"cw-{other}-theirs", image=test_image), fingerprint=other
        )
        views = docker_runtime.list_managed(fingerprint)
        assert [v.name for v in views] == [f"cw-{fingerprint}-mine"]
        assert views[0].labels[LABEL_TWIN] == TWIN
    finally:
        docker_runtime.remove(f"cw-{other}-theirs", fingerprint=other)


def test_empty_fingerprint_is_refused(docker_runtime: DockerRuntime) -> None:
    """Selecting containers with an empty fingerprint is a programming error."""
    with pytest.raises(ValueError, match="fingerprint"):
        docker_runtime.list_managed("")


def test_engine_facts(docker_runtime: DockerRuntime) -> None:
    """Engine facts report the version, runtimes and data root."""
    facts = docker_runtime.engine_facts()
    assert facts.server_version
    assert "runc" in facts.runtimes
    assert facts.default_runtime in facts.runtimes
    assert facts.data_root.startswith("/")
    assert facts.has_nvidia is ("nvidia" in facts.runtimes)


def test_connect_to_a_missing_engine_names_the_fix(tmp_path: Path) -> None:
    """An unreachable engine raises RuntimeUnavailable with the systemctl hint."""
    with pytest.raises(RuntimeUnavailable) as caught:
        DockerRuntime.connect(f"unix://{tmp_path}/no-docker.sock", timeout=5)
    assert "sudo systemctl start docker" in str(caught.value)


def test_connect_to_the_local_engine(docker_client: docker.DockerClient) -> None:
    """connect() with the default environment reaches the running engine."""
    runtime = DockerRuntime.connect(timeout=30)
    try:
        assert runtime.engine_facts().server_version
    finally:
        runtime.close()
