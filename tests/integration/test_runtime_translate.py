"""Run options really reach the engine: the inspected config matches the flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from edge_core.runtime import DockerRuntime
from tests.support.docker_helpers import create_container, run_container

pytestmark = pytest.mark.integration


def test_bridge_container_with_many_flags(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    test_image: str,
    tmp_path: Path,
) -> None:
    """A spec with many flags gives exactly the host config and config expected."""
    source = tmp_path / "data"
    source.mkdir()
    (source / "hello.txt").write_text("from the host\n")
    env_file = tmp_path / "driver.env"
    env_file.write_text("# driver settings\nFROM_FILE=yes\nOVERRIDDEN=file\n")
    params = [
        "--env-file", str(env_file),
        "-e", "OVERRIDDEN=spec",
        "--label", "team=robots",
        "--mount", f"type=bind,source={source},target=/data,readonly",
        "--mount", "type=tmpfs,target=/scratch,tmpfs-size=8m",
        "--device", "/dev/null:/dev/edge-null:rw",
        "--network", "bridge",
        "--hostname", "robot-1",
        "--add-host", "host.docker.internal:host-gateway",
        "--add-host", "db:10.1.2.3",
        "--dns", "10.0.0.53",
        "--dns-search", "lab.local",
        "--cap-add", "NET_ADMIN",
        "--cap-drop", "MKNOD",
        "--init",
        "--user", "0:0",
        "--workdir", "/tmp",
        "--publish", "127.0.0.1::8080/tcp",
        "--expose", "9000",
        "--restart", "on-failure:3",
        "--stop-signal", "SIGINT",
        "--stop-timeout", "4",
        "--log-driver", "json-file",
        "--log-opt", "max-size=1m",
        "--shm-size", "32m",
        "--memory", "256m",
        "--cpus", "0.5",
        "--read-only",
        "--sysctl", "net.ipv4.ip_forward=1",
        "--tmpfs", "/run:size=4m",
        "--ulimit", "nofile=512:1024",
        "--security-opt", "no-new-privileges",
        "--group-add", "audio",
        "--gpus", "device=0,1",
    ]  # fmt: skip
    name = create_container(
        docker_runtime,
        fingerprint,
        test_image,
        suffix="many",
        command=("sleep", "3600"),
        params=params,
    )
    attrs: dict[str, Any] = docker_client.api.inspect_container(name)
    host = attrs["HostConfig"]
    config = attrs["Config"]

    assert host["NetworkMode"] == "bridge"
    assert sorted(host["ExtraHosts"]) == [
        "db:10.1.2.3",
        "host.docker.internal:host-gateway",
    ]
    assert host["Dns"] == ["10.0.0.53"]
    assert host["DnsSearch"] == ["lab.local"]
    assert host["CapAdd"] == ["NET_ADMIN"]
    assert host["CapDrop"] == ["MKNOD"]
    assert host["Init"] is True
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert host["ShmSize"] == 32 * 1024 * 1024
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["ReadonlyRootfs"] is True
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host["Tmpfs"] == {"/run": "size=4m"}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["GroupAdd"] == ["audio"]
    assert host["Devices"] == [
        {
            "PathOnHost": "/dev/null",
            "PathInContainer": "/dev/edge-null",
            "CgroupPermissions": "rw",
        }
    ]
    assert host["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]
    }
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/data"]["Type"] == "bind"
    assert mounts["/data"]["ReadOnly"] is True
    assert mounts["/scratch"]["TmpfsOptions"]["SizeBytes"] == 8 * 1024 * 1024
    (request,) = host["DeviceRequests"]
    assert request["DeviceIDs"] == ["0", "1"]
    assert request["Capabilities"] == [["gpu"]]

    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["FROM_FILE"] == "yes"
    assert env["OVERRIDDEN"] == "spec"
    assert config["Labels"]["team"] == "robots"
    assert config["Hostname"] == "robot-1"
    assert config["User"] == "0:0"
    assert config["WorkingDir"] == "/tmp"
    assert config["StopSignal"] == "SIGINT"
    assert config["StopTimeout"] == 4
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9000/tcp"}


def test_options_take_effect_inside_a_running_container(
    docker_runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fingerprint: str,
    test_image: str,
    tmp_path: Path,
) -> None:
    """Env, a read-only bind, tmpfs, hostname and entrypoint work in the container."""
    (tmp_path / "hello.txt").write_text("from the host\n")
    script = (
        'echo "env=$GREETING"; cat /data/hello.txt; hostname; '
        "touch /data/x 2>/dev/null && echo data-rw || echo data-ro; "
        "touch /scratch/x && echo scratch-rw"
    )
    params = [
        "-e", "GREETING=hi",
        "-v", f"{tmp_path}:/data:ro",
        "--tmpfs", "/scratch",
        "--hostname", "robot-2",
        "--entrypoint", "/bin/sh -c",
    ]  # fmt: skip
    name = run_container(
        docker_runtime,
        fingerprint,
        test_image,
        (script,),
        suffix="inside",
        params=params,
    )
    docker_client.api.wait(name, timeout=30)
    lines = [line.decode() for line in docker_runtime.logs(name, follow=False)]
    assert lines == ["env=hi", "from the host", "robot-2", "data-ro", "scratch-rw"]
