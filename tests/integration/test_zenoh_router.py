"""The Zenoh router container on a real Docker engine (protocol.md 4.10).

The router image is a local stand-in for ``eclipse/zenoh``: busybox with
an entrypoint that, like the real image's, receives the router's
arguments, prints them and keeps running.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from edge_core.config.settings import load_settings
from edge_core.drivers.zenoh import RouterState, ZenohRouter
from edge_core.model.spec import LABEL_CREATED_BY, LABEL_FINGERPRINT, LABEL_SPEC_HASH
from edge_core.model.zenoh import RouterInputs, router_spec
from edge_core.runtime import DockerRuntime
from tests.conftest import remove_labelled
from tests.emulator.broker import free_port
from tests.support.docker_helpers import container_ids

pytestmark = pytest.mark.integration


def make_router(
    runtime: DockerRuntime,
    fingerprint: str,
    image: str,
    *,
    environment_uuid: str | None = None,
    enabled: bool = True,
    port: int = 7447,
) -> ZenohRouter:
    """A router of a fresh environment, probed on test timings."""
    inputs = RouterInputs(
        image=image,
        port=port,
        environment_uuid=environment_uuid or str(uuid.uuid4()),
        version="test",
    )
    return ZenohRouter(
        runtime,
        inputs=inputs,
        fingerprint=fingerprint,
        enabled=enabled,
        probe_timeout=30,
        probe_interval=0.1,
    )


def inspect(client: docker.DockerClient, name: str) -> dict[str, Any]:
    attrs: dict[str, Any] = client.api.inspect_container(name)
    return attrs


def output(runtime: DockerRuntime, name: str, fingerprint: str) -> list[str]:
    lines = runtime.logs(name, follow=False, fingerprint=fingerprint)
    return [line.decode() for line in lines]


def exists(client: docker.DockerClient, name: str) -> bool:
    return bool(client.api.containers(all=True, filters={"name": f"^/{name}$"}))


def test_router_is_created_as_the_contract_says(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """Name, labels, host network, restart policy and log options."""
    environment = str(uuid.uuid4())
    router = make_router(
        docker_runtime, fingerprint, router_image, environment_uuid=environment
    )
    status = router.ensure()
    assert status.state is RouterState.STARTED, status
    assert status.endpoint == "tcp/127.0.0.1:7447"
    assert router.name == f"cyberwave-zenoh-router-{environment[:8]}"

    attrs = inspect(docker_client, router.name)
    assert attrs["Id"] == status.container_id
    assert attrs["State"]["Status"] == "running"
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_FINGERPRINT] == fingerprint
    assert labels[LABEL_CREATED_BY] == "cyberwave-edge-core/test"
    image_id = docker_client.api.inspect_image(router_image)["Id"]
    expected = router_spec(
        RouterInputs(image=router_image, environment_uuid=environment),
        fingerprint=fingerprint,
        image_id=image_id,
    )
    assert labels[LABEL_SPEC_HASH] == expected.spec_hash
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "3", "max-size": "10m"},
    }
    assert output(docker_runtime, router.name, fingerprint) == ["zenohd"]


def test_ensure_again_adopts_the_running_router(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A running router with the same spec hash is left alone, said once."""
    router = make_router(docker_runtime, fingerprint, router_image)
    started = router.ensure()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_core"):
        first = router.ensure()
        second = router.ensure()
    assert first.state is second.state is RouterState.ADOPTED
    assert first.container_id == second.container_id == started.container_id
    assert inspect(docker_client, router.name)["RestartCount"] == 0
    changes = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert changes == []


def test_a_new_edge_core_adopts_the_router_of_the_last_one(
    docker_runtime: DockerRuntime, fingerprint: str, router_image: str
) -> None:
    """Another ZenohRouter with the same inputs (the next start) adopts it."""
    environment = str(uuid.uuid4())
    started = make_router(
        docker_runtime, fingerprint, router_image, environment_uuid=environment
    ).ensure()
    again = make_router(
        docker_runtime, fingerprint, router_image, environment_uuid=environment
    ).ensure()
    assert again.state is RouterState.ADOPTED
    assert again.container_id == started.container_id


def test_restart_gives_a_new_container(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """``restart`` removes the router and starts a new one."""
    router = make_router(docker_runtime, fingerprint, router_image)
    before = router.ensure()
    after = router.restart()
    assert after.state is RouterState.STARTED
    assert after.container_id != before.container_id
    assert inspect(docker_client, router.name)["State"]["Status"] == "running"
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(str(before.container_id))


def test_a_stopped_or_changed_router_is_recreated(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """A stopped router, or one whose spec changed, is replaced."""
    environment = str(uuid.uuid4())
    router = make_router(
        docker_runtime, fingerprint, router_image, environment_uuid=environment
    )
    first = router.ensure()
    docker_client.api.stop(str(first.container_id), timeout=5)
    second = router.ensure()
    assert second.state is RouterState.STARTED
    assert second.container_id != first.container_id

    moved = make_router(
        docker_runtime,
        fingerprint,
        router_image,
        environment_uuid=environment,
        port=7500,
    )
    third = moved.ensure()
    assert third.state is RouterState.STARTED
    assert third.container_id != second.container_id
    assert third.endpoint == "tcp/127.0.0.1:7500"
    name = moved.name
    assert output(docker_runtime, name, fingerprint) == [
        "zenohd --listen tcp/0.0.0.0:7500"
    ]


def test_a_missing_image_fails_clearly_without_raising(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An image that is neither here nor pullable gives one error line naming
    it and ZENOH_ROUTER_IMAGE, and a failed status, however often it is tried."""
    image = f"127.0.0.1:{free_port()}/cw-test/zenoh-missing:{uuid.uuid4().hex[:8]}"
    router = make_router(docker_runtime, fingerprint, image)
    with caplog.at_level(logging.ERROR, logger="edge_core.drivers.zenoh"):
        first = router.ensure()
        second = router.ensure()
    assert first.state is second.state is RouterState.FAILED
    assert not first.ok
    assert image in first.reason
    assert "ZENOH_ROUTER_IMAGE" in first.reason
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"Zenoh router {router.name} is not running: ")
    assert "\n" not in errors[0]
    assert not exists(docker_client, router.name)


def test_a_failed_router_is_tried_again_after_the_retry_delay(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """After a failure the router is not tried again before the delay has
    passed; then an image that appeared meanwhile starts it."""
    repository = f"127.0.0.1:{free_port()}/cw-test/zenoh-late"
    tag = uuid.uuid4().hex[:8]
    now = [1000.0]
    router = ZenohRouter(
        docker_runtime,
        inputs=RouterInputs(
            image=f"{repository}:{tag}",
            environment_uuid=str(uuid.uuid4()),
            version="test",
        ),
        fingerprint=fingerprint,
        probe_timeout=30,
        probe_interval=0.1,
        retry_initial=10,
        retry_max=10,
        clock=lambda: now[0],
    )
    assert router.ensure().state is RouterState.FAILED
    docker_client.api.tag(router_image, repository, tag)
    try:
        now[0] += 9
        assert router.ensure().state is RouterState.FAILED
        assert not exists(docker_client, router.name)
        now[0] += 1
        assert router.ensure().state is RouterState.STARTED
    finally:
        docker_runtime.remove(router.name, fingerprint=fingerprint)
        docker_client.api.remove_image(f"{repository}:{tag}")


def test_a_foreign_container_with_the_name_is_left_alone(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """A router of another edge core under the same name is never touched."""
    environment = str(uuid.uuid4())
    other = f"{fingerprint}-other"
    theirs = make_router(
        docker_runtime, other, router_image, environment_uuid=environment
    )
    try:
        foreign = theirs.ensure()
        ours = make_router(
            docker_runtime, fingerprint, router_image, environment_uuid=environment
        ).ensure()
        assert ours.state is RouterState.FAILED
        assert "not managed by this edge core" in ours.reason
        attrs = inspect(docker_client, theirs.name)
        assert attrs["Id"] == foreign.container_id
        assert attrs["State"]["Status"] == "running"
    finally:
        remove_labelled(docker_client, other)


def test_a_renamed_router_gets_its_name_back_and_is_not_doubled(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """A router a person renamed is known by its labels: it is renamed back
    and adopted, no second one is started, and a restart replaces it."""
    router = make_router(docker_runtime, fingerprint, router_image)
    started = router.ensure()
    docker_client.api.rename(str(started.container_id), f"my-router-{fingerprint}")

    again = router.ensure()
    assert again.state is RouterState.ADOPTED, again
    assert again.container_id == started.container_id
    assert container_ids(docker_client, fingerprint) == {
        router.name: started.container_id
    }

    docker_client.api.rename(str(started.container_id), f"my-router-{fingerprint}")
    restarted = router.restart()
    assert restarted.state is RouterState.STARTED, restarted
    assert container_ids(docker_client, fingerprint) == {
        router.name: restarted.container_id
    }


def test_a_renamed_router_whose_name_is_taken_keeps_running_as_it_is(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When a container that is not ours took the name of our renamed router,
    both are left as they are and no second router starts; it is said once
    at WARNING, and the router gets its name back once the name is free."""
    router = make_router(docker_runtime, fingerprint, router_image)
    started = router.ensure()
    renamed = f"my-router-{fingerprint}"
    docker_client.api.rename(str(started.container_id), renamed)
    other = f"{fingerprint}-other"
    foreign = docker_client.api.create_container(
        router_image, name=router.name, labels={LABEL_FINGERPRINT: other}
    )
    try:
        with caplog.at_level(logging.INFO, logger="edge_core"):
            first = router.ensure()
            second = router.ensure()
        for status in (first, second):
            assert status.state is RouterState.ADOPTED, status
            assert status.ok
            assert (status.name, status.container_id) == (
                renamed,
                started.container_id,
            )
            assert "not managed by this edge core" in status.note
        assert router.container_name == renamed
        assert container_ids(docker_client, fingerprint) == {
            renamed: started.container_id
        }
        assert inspect(docker_client, router.name)["Id"] == foreign["Id"]
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert warnings == [f"Zenoh router {router.name} {first.note}"]
        assert caplog.records[0].levelno == logging.WARNING
    finally:
        remove_labelled(docker_client, other)

    back = router.ensure()
    assert back.state is RouterState.ADOPTED, back
    assert (back.name, back.container_id, back.note) == (
        router.name,
        started.container_id,
        "",
    )


def test_a_paused_router_is_left_alone(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """A router a person paused is neither removed nor recreated; its status
    says it is paused and how to undo it, and it is adopted once unpaused."""
    router = make_router(docker_runtime, fingerprint, router_image)
    started = router.ensure()
    docker_client.api.pause(str(started.container_id))

    paused = router.ensure()
    assert paused.state is RouterState.PAUSED, paused
    assert paused.ok
    assert paused.container_id == started.container_id
    assert paused.note == (
        f"paused by hand; left alone until: docker unpause {router.name}"
    )
    assert inspect(docker_client, router.name)["State"]["Status"] == "paused"

    docker_client.api.unpause(str(started.container_id))
    unpaused = router.ensure()
    assert unpaused.state is RouterState.ADOPTED
    assert unpaused.container_id == started.container_id


def test_disabled_removes_a_router_left_running(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """With the setting off, a router of ours from an earlier run goes."""
    environment = str(uuid.uuid4())
    make_router(
        docker_runtime, fingerprint, router_image, environment_uuid=environment
    ).ensure()
    router = make_router(
        docker_runtime,
        fingerprint,
        router_image,
        environment_uuid=environment,
        enabled=False,
    )
    status = router.ensure()
    assert status.state is RouterState.DISABLED
    assert status.ok
    assert not exists(docker_client, router.name)
    assert router.restart().state is RouterState.DISABLED


def test_the_router_of_another_environment_is_replaced(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
) -> None:
    """After the environment changed, the old environment's router goes."""
    old = make_router(docker_runtime, fingerprint, router_image)
    old.ensure()
    new = make_router(docker_runtime, fingerprint, router_image)
    assert new.ensure().state is RouterState.STARTED
    assert not exists(docker_client, old.name)
    assert exists(docker_client, new.name)


def test_router_from_settings(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    router_image: str,
    tmp_path: Path,
) -> None:
    """``ZenohRouter.create`` takes image, port and timings from Settings."""
    settings = load_settings(
        {
            "ZENOH_ROUTER_ENABLED": "true",
            "ZENOH_ROUTER_IMAGE": router_image,
            "ZENOH_ROUTER_PORT": "7600",
            "CYBERWAVE_DOCKER_LOG_MAX_SIZE": "off",
            "CYBERWAVE_DRIVER_STARTUP_PROBE_SECONDS": "30",
            "CYBERWAVE_DRIVER_PROBE_INTERVAL_SECONDS": "0.1",
        },
        envs={},
        config_dir=tmp_path,
    )
    router = ZenohRouter.create(
        docker_runtime,
        settings,
        fingerprint=fingerprint,
        environment_uuid=str(uuid.uuid4()),
        version="test",
        host_is_linux=True,
    )
    status = router.ensure()
    assert status.state is RouterState.STARTED
    assert status.endpoint == "tcp/127.0.0.1:7600"
    attrs = inspect(docker_client, router.name)
    assert attrs["Config"]["Image"] == router_image
    engine_default = docker_client.info()["LoggingDriver"]
    assert attrs["HostConfig"]["LogConfig"] == {"Type": engine_default, "Config": {}}
    assert output(docker_runtime, router.name, fingerprint) == [
        "zenohd --listen tcp/0.0.0.0:7600"
    ]
