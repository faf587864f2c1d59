"""Turning run options into Engine API create arguments, without Docker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from edge_core.errors import DriverSpecError
from edge_core.model.spec import LABEL_TWIN
from edge_core.runtime.flag_values import restart_policy
from edge_core.runtime.translate import CreateArgs, create_args, parse_env_file
from tests.support.specs import make_spec


def translate(
    params: Sequence[str],
    *,
    files: dict[str, str] | None = None,
    host_env: dict[str, str] | None = None,
    command: Sequence[str] = (),
) -> CreateArgs:
    spec = make_spec(
        "cw-unit", image="cw-test/busybox:1", params=params, command=command
    )

    def reader(path: str) -> str:
        if files is None or path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]

    return create_args(spec, env_file_reader=reader, host_env=host_env or {})


def host(params: Sequence[str]) -> dict[str, Any]:
    return dict(translate(params).host_config)


def container(params: Sequence[str]) -> dict[str, Any]:
    return dict(translate(params).container)


def test_identity_labels_and_command() -> None:
    """Image, name, command and the spec's labels land in the container config."""
    args = translate(["-l", "team=robots"], command=["sh", "-c", "sleep 1"])
    assert args.container["image"] == "cw-test/busybox:1"
    assert args.container["name"] == "cw-unit"
    assert args.container["command"] == ["sh", "-c", "sleep 1"]
    assert args.container["labels"]["team"] == "robots"
    assert LABEL_TWIN in args.container["labels"]


def test_spec_labels_win_over_option_labels() -> None:
    """A label in the spec overrides the same key given with --label."""
    spec = make_spec(
        "cw-unit",
        image="img",
        params=["--label", "owner=params"],
        labels={"owner": "edge"},
    )
    args = create_args(spec, host_env={})
    assert args.container["labels"]["owner"] == "edge"


def test_no_command_keeps_the_image_default() -> None:
    """An empty command is left out so the image's CMD runs."""
    assert "command" not in container([])


def test_env_file_is_merged_under_the_spec_env() -> None:
    """Env-file variables are read, and -e values win over them."""
    files = {
        "/cfg/driver.env": "# comment\n\nA=from-file\nB=file b\n  C=x=y\nHOSTVAR\n"
    }
    args = translate(
        ["--env-file", "/cfg/driver.env", "-e", "A=from-spec"],
        files=files,
        host_env={"HOSTVAR": "from-host"},
    )
    assert args.container["environment"] == {
        "A": "from-spec",
        "B": "file b",
        "C": "x=y",
        "HOSTVAR": "from-host",
    }


def test_env_file_bare_key_missing_on_host_is_left_out() -> None:
    """A bare KEY that the host does not define is not passed at all."""
    env = parse_env_file("ONLY_KEY\nX=1\n", path="f", host_env={})
    assert env == {"X": "1"}


def test_unreadable_env_file_names_flag_and_path() -> None:
    """A missing env file is a DriverSpecError naming --env-file and the path."""
    with pytest.raises(DriverSpecError, match=r"--env-file '/nope.env'"):
        translate(["--env-file", "/nope.env"])


def test_env_file_with_spaces_in_a_name_is_refused() -> None:
    """A variable name with whitespace is refused with its line number."""
    with pytest.raises(DriverSpecError, match="line 2"):
        parse_env_file("A=1\nBAD NAME=2\n", path="/x.env", host_env={})


def test_volumes_become_binds_and_anonymous_volumes() -> None:
    """host:container[:mode] are binds; a lone container path is a volume."""
    args = translate(["-v", "/cfg:/app/.cyberwave:ro", "-v", "/data", "-v", "/a:/b"])
    assert args.host_config["binds"] == ["/a:/b", "/cfg:/app/.cyberwave:ro"]
    assert args.container["volumes"] == ["/data"]


@pytest.mark.parametrize(
    "value", ["relative", "/a:/b:xx", "/a:b", ":/b", "/a:/b:ro:extra"]
)
def test_bad_volumes_are_refused(value: str) -> None:
    """A volume the engine cannot take is refused naming --volume and the value."""
    with pytest.raises(DriverSpecError, match=f"--volume '{value}'"):
        translate(["-v", value])


def test_bind_mount_with_readonly() -> None:
    """--mount type=bind,…,readonly becomes a read-only bind Mount."""
    mounts = host(["--mount", "type=bind,source=/host/x,target=/x,readonly"])["mounts"]
    assert mounts == [
        {"Type": "bind", "Source": "/host/x", "Target": "/x", "ReadOnly": True}
    ]


def test_mount_aliases_and_options() -> None:
    """src/dst aliases, propagation, tmpfs size and mode are understood."""
    mounts = host(
        [
            "--mount",
            "type=bind,src=/h,dst=/c,bind-propagation=rslave,ro=false",
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=64m,tmpfs-mode=1770",
            "--mount",
            "type=volume,source=cache,target=/cache,volume-nocopy",
        ]
    )["mounts"]
    by_target = {m["Target"]: m for m in mounts}
    assert by_target["/c"] == {
        "Type": "bind",
        "Source": "/h",
        "Target": "/c",
        "BindOptions": {"Propagation": "rslave"},
    }
    assert by_target["/scratch"]["TmpfsOptions"] == {
        "SizeBytes": 64 * 1024 * 1024,
        "Mode": 0o1770,
    }
    assert by_target["/cache"]["VolumeOptions"] == {"NoCopy": True}


@pytest.mark.parametrize(
    "value",
    [
        "type=bind,target=/x",
        "type=bind,source=/x",
        "type=nfs,source=/x,target=/x",
        "type=bind,source=/x,target=/x,colour=red",
        "type=bind,source=/x,target=/x,readonly=maybe",
    ],
)
def test_bad_mounts_are_refused(value: str) -> None:
    """Mounts without a target, with an unknown type or key are refused."""
    with pytest.raises(DriverSpecError, match="--mount"):
        translate(["--mount", value])


def test_devices_in_all_forms() -> None:
    """host, host:container, host:perms and host:container:perms are mapped."""
    devices = host(
        [
            "--device",
            "/dev/ttyACM0",
            "--device",
            "/dev/video0:/dev/video9",
            "--device",
            "/dev/sda:r",
            "--device",
            "/dev/i2c-1:/dev/i2c-1:rw",
        ]
    )["devices"]
    assert {
        d["PathOnHost"]: (d["PathInContainer"], d["CgroupPermissions"]) for d in devices
    } == {
        "/dev/ttyACM0": ("/dev/ttyACM0", "rwm"),
        "/dev/video0": ("/dev/video9", "rwm"),
        "/dev/sda": ("/dev/sda", "r"),
        "/dev/i2c-1": ("/dev/i2c-1", "rw"),
    }


@pytest.mark.parametrize("value", ["ttyACM0", "/dev/x:/dev/y:rwx", "/dev/x:/dev/y:r:z"])
def test_bad_devices_are_refused(value: str) -> None:
    """A device path that is not absolute or has bad permissions is refused."""
    with pytest.raises(DriverSpecError, match="--device"):
        translate(["--device", value])


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("host", "host"),
        ("none", "none"),
        ("bridge", "bridge"),
        ("container:other", "container:other"),
        ("robots-net", "robots-net"),
    ],
)
def test_network_modes(network: str, expected: str) -> None:
    """Every network form becomes the host config's network mode."""
    assert host(["--network", network])["network_mode"] == expected


def test_extra_hosts_including_host_gateway() -> None:
    """--add-host keeps host-gateway and accepts the name=ip form."""
    hosts = host(
        [
            "--add-host",
            "host.docker.internal:host-gateway",
            "--add-host",
            "db=10.0.0.5",
            "--add-host",
            "v6:::1",
        ]
    )["extra_hosts"]
    assert sorted(hosts) == [
        "db:10.0.0.5",
        "host.docker.internal:host-gateway",
        "v6:::1",
    ]


def test_add_host_without_address_is_refused() -> None:
    """--add-host needs both a name and an address."""
    with pytest.raises(DriverSpecError, match="--add-host 'justaname'"):
        translate(["--add-host", "justaname"])


def test_capabilities_dns_security_groups_and_cgroup_rules() -> None:
    """List flags map one to one onto their host-config keys."""
    config = host(
        [
            "--cap-add", "SYS_ADMIN",
            "--cap-drop", "NET_RAW",
            "--dns", "1.1.1.1",
            "--dns-search", "lab.local",
            "--dns-option", "ndots:2",
            "--security-opt", "seccomp=unconfined",
            "--group-add", "dialout",
            "--device-cgroup-rule", "c 81:* rmw",
        ]
    )  # fmt: skip
    assert config["cap_add"] == ["SYS_ADMIN"]
    assert config["cap_drop"] == ["NET_RAW"]
    assert config["dns"] == ["1.1.1.1"]
    assert config["dns_search"] == ["lab.local"]
    assert config["dns_opt"] == ["ndots:2"]
    assert config["security_opt"] == ["seccomp=unconfined"]
    assert config["group_add"] == ["dialout"]
    assert config["device_cgroup_rules"] == ["c 81:* rmw"]


def test_boolean_flags() -> None:
    """--privileged, --init, --read-only, --tty and --interactive are set."""
    args = translate(["--privileged", "--init", "--read-only", "-t", "-i", "-d"])
    assert args.host_config["privileged"] is True
    assert args.host_config["init"] is True
    assert args.host_config["read_only"] is True
    assert args.container["tty"] is True
    assert args.container["stdin_open"] is True
    assert "detach" not in args.container


def test_name_flag_is_consumed() -> None:
    """--name in the params does not override the spec's container name."""
    assert container(["--name", "other"])["name"] == "cw-unit"


def test_process_settings() -> None:
    """ipc, pid, user, workdir, hostname and stop settings are mapped."""
    args = translate(
        [
            "--ipc", "host",
            "--pid", "host",
            "-u", "1000:1000",
            "-w", "/app",
            "-h", "robot",
            "--stop-signal", "SIGINT",
            "--stop-timeout", "7",
            "--runtime", "nvidia",
        ]
    )  # fmt: skip
    assert args.host_config["ipc_mode"] == "host"
    assert args.host_config["pid_mode"] == "host"
    assert args.host_config["runtime"] == "nvidia"
    assert args.container["user"] == "1000:1000"
    assert args.container["working_dir"] == "/app"
    assert args.container["hostname"] == "robot"
    assert args.container["stop_signal"] == "SIGINT"
    assert args.container["stop_timeout"] == 7


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("/bin/sh -c 'echo hi'", ["/bin/sh", "-c", "echo hi"]),
        ("python3", ["python3"]),
        ("", [""]),
    ],
)
def test_entrypoint_is_split_like_a_shell(entrypoint: str, expected: list[str]) -> None:
    """A string entrypoint becomes an argument list; empty resets it."""
    assert container([f"--entrypoint={entrypoint}"])["entrypoint"] == expected


def test_bad_stop_timeout_is_refused() -> None:
    """A stop timeout that is not a number is refused naming the flag."""
    with pytest.raises(DriverSpecError, match="--stop-timeout 'soon'"):
        translate(["--stop-timeout", "soon"])


@pytest.mark.parametrize(
    ("value", "bindings", "exposed"),
    [
        ("80", {"80/tcp": [{"HostIp": "", "HostPort": ""}]}, [("80", "tcp")]),
        ("8080:80", {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, [("80", "tcp")]),
        (
            "127.0.0.1:8080:80/udp",
            {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            [("80", "udp")],
        ),
        (
            "127.0.0.1::80",
            {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            [("80", "tcp")],
        ),
        (
            "7000-7001:7000-7001",
            {
                "7000/tcp": [{"HostIp": "", "HostPort": "7000"}],
                "7001/tcp": [{"HostIp": "", "HostPort": "7001"}],
            },
            [("7000", "tcp"), ("7001", "tcp")],
        ),
    ],
)
def test_publish_forms(
    value: str, bindings: dict[str, Any], exposed: list[tuple[str, str]]
) -> None:
    """Every usual --publish form gives exposed ports and port bindings."""
    args = translate(["-p", value])
    assert args.host_config["port_bindings"] == bindings
    assert args.container["ports"] == exposed


def test_expose_without_publish_binds_nothing() -> None:
    """--expose only exposes: no port binding is created."""
    args = translate(["--expose", "9000", "--expose", "5000-5001/udp"])
    assert "port_bindings" not in args.host_config
    assert sorted(args.container["ports"]) == [
        ("5000", "udp"),
        ("5001", "udp"),
        ("9000", "tcp"),
    ]


@pytest.mark.parametrize(("flag", "value"), [("-p", "80:abc"), ("--expose", "http")])
def test_bad_ports_are_refused(flag: str, value: str) -> None:
    """A port that cannot be parsed is refused naming the flag and value."""
    with pytest.raises(DriverSpecError, match=value):
        translate([flag, value])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no", {"Name": "no"}),
        ("always", {"Name": "always"}),
        ("unless-stopped", {"Name": "unless-stopped"}),
        ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
        ("on-failure:5", {"Name": "on-failure", "MaximumRetryCount": 5}),
    ],
)
def test_restart_policies(value: str, expected: dict[str, Any]) -> None:
    """Every restart policy form becomes the engine's RestartPolicy."""
    assert host(["--restart", value])["restart_policy"] == expected
    assert restart_policy(value) == expected


@pytest.mark.parametrize(
    "value", ["sometimes", "always:3", "on-failure:x", "on-failure:-1"]
)
def test_bad_restart_policies_are_refused(value: str) -> None:
    """An unknown restart policy is refused naming --restart and the value."""
    with pytest.raises(DriverSpecError, match="--restart"):
        translate(["--restart", value])


def test_log_driver_and_options() -> None:
    """--log-driver and --log-opt become one log config."""
    config = host(
        [
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=10m",
            "--log-opt",
            "max-file=3",
        ]
    )["log_config"]
    assert config == {
        "type": "json-file",
        "config": {"max-file": "3", "max-size": "10m"},
    }


def test_log_options_alone_default_to_json_file() -> None:
    """Log options without a driver use json-file."""
    assert host(["--log-opt", "max-size=1m"])["log_config"]["type"] == "json-file"


def test_bad_log_option_is_refused() -> None:
    """A log option that is not key=value is refused."""
    with pytest.raises(DriverSpecError, match="--log-opt 'max-size'"):
        translate(["--log-opt", "max-size"])


@pytest.mark.parametrize(
    ("value", "count", "ids", "caps"),
    [
        ("all", -1, [], [["gpu"]]),
        ("2", 2, [], [["gpu"]]),
        ("device=0,2", 0, ["0", "2"], [["gpu"]]),
        ('"device=0,2"', 0, ["0", "2"], [["gpu"]]),
        ("count=1,capabilities=utility", 1, [], [["utility", "gpu"]]),
        ("all,capabilities=compute,utility", -1, [], [["compute", "utility", "gpu"]]),
    ],
)
def test_gpus(value: str, count: int, ids: list[str], caps: list[list[str]]) -> None:
    """--gpus becomes a device request with count or ids and gpu capability."""
    (request,) = host(["--gpus", value])["device_requests"]
    assert request["Count"] == count
    assert request["DeviceIDs"] == ids
    assert request["Capabilities"] == caps


@pytest.mark.parametrize("value", ["banana", "2,device=1"])
def test_bad_gpus_are_refused(value: str) -> None:
    """An unknown --gpus part, or a count with ids, is refused."""
    with pytest.raises(DriverSpecError, match="--gpus"):
        translate(["--gpus", value])


def test_sizes_and_cpus() -> None:
    """--shm-size and --memory are bytes; --cpus becomes nano CPUs."""
    config = host(["--shm-size", "64m", "-m", "1g", "--cpus", "1.5"])
    assert config["shm_size"] == 64 * 1024 * 1024
    assert config["mem_limit"] == 1024 * 1024 * 1024
    assert config["nano_cpus"] == 1_500_000_000


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--memory", "lots"), ("--shm-size", "-5m"), ("--cpus", "0"), ("--cpus", "two")],
)
def test_bad_sizes_are_refused(flag: str, value: str) -> None:
    """A size or CPU count the engine cannot take names the flag and value."""
    with pytest.raises(DriverSpecError, match=f"{flag} '{value}'"):
        translate([flag, value])


def test_sysctls_tmpfs_and_ulimits() -> None:
    """sysctl and tmpfs become maps; ulimits get soft and hard values."""
    config = host(
        [
            "--sysctl", "net.core.somaxconn=1024",
            "--tmpfs", "/run:rw,size=16m",
            "--tmpfs", "/cache",
            "--ulimit", "nofile=1024:2048",
            "--ulimit", "rtprio=99",
        ]
    )  # fmt: skip
    assert config["sysctls"] == {"net.core.somaxconn": "1024"}
    assert config["tmpfs"] == {"/run": "rw,size=16m", "/cache": ""}
    assert sorted(config["ulimits"], key=lambda u: u["name"]) == [
        {"name": "nofile", "soft": 1024, "hard": 2048},
        {"name": "rtprio", "soft": 99, "hard": 99},
    ]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--sysctl", "novalue"), ("--tmpfs", "relative"), ("--ulimit", "nofile=lots")],
)
def test_bad_maps_are_refused(flag: str, value: str) -> None:
    """Malformed sysctl, tmpfs and ulimit values are refused."""
    with pytest.raises(DriverSpecError, match=flag):
        translate([flag, value])


def test_unknown_option_in_a_spec_is_refused() -> None:
    """A spec whose options hold a flag outside FLAGS is refused by name."""
    spec = make_spec("cw-unit", image="img")
    broken = type(spec)(
        name=spec.name,
        image=spec.image,
        twin_uuid=spec.twin_uuid,
        service=None,
        command=(),
        options={"--volumes-from": ["x"]},
        labels={},
    )
    with pytest.raises(DriverSpecError, match="--volumes-from"):
        create_args(broken, host_env={})


def test_edge_driver_defaults_translate_together() -> None:
    """The edge core's own driver flags (protocol 4.4) all translate at once."""
    args = translate(
        [
            "--detach", "--init", "--stop-timeout", "5", "--restart", "unless-stopped",
            "--privileged", "--log-driver", "json-file", "--log-opt", "max-size=10m",
            "--log-opt", "max-file=3", "--network", "host",
            "-v", "/home/u/.cyberwave:/app/.cyberwave:ro",
            "-e", "CYBERWAVE_TWIN_UUID=t",
        ]
    )  # fmt: skip
    assert args.host_config["network_mode"] == "host"
    assert args.host_config["restart_policy"] == {"Name": "unless-stopped"}
    assert args.container["stop_timeout"] == 5
    assert args.container["environment"] == {"CYBERWAVE_TWIN_UUID": "t"}
