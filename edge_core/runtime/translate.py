"""Turn a ``ContainerSpec`` into the arguments of the Engine API create call.

The normalized run options (``edge_core.model.options``) use ``docker run``
flag names. This module maps each flag to the docker SDK's low-level
``APIClient.create_container`` arguments (the container config) and
``APIClient.create_host_config`` arguments (the host config), and checks
every value the engine would otherwise reject with a vague message.

It does not talk to the engine, does not decide which flags a driver gets
(that is the model's job) and does not resolve image references. The only
side effect is reading ``--env-file`` files, through an injectable reader.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.utils.ports import build_port_bindings

from edge_core.config.files import read_regular
from edge_core.errors import DriverSpecError
from edge_core.model.options import FLAGS, RunOptions
from edge_core.model.spec import ContainerSpec
from edge_core.runtime import flag_values

EnvFileReader = Callable[[str], str]

_ENV_NAME = re.compile(r"^[^\s=]+$")
_EXPOSE = re.compile(r"^(?P<start>\d+)(?:-(?P<end>\d+))?(?:/(?P<proto>tcp|udp|sctp))?$")


@dataclass(frozen=True)
class CreateArgs:
    """Keyword arguments for the two SDK calls that create one container.

    ``container`` goes to ``APIClient.create_container`` and ``host_config``
    to ``APIClient.create_host_config`` (whose result is passed as the
    ``host_config`` argument of the first call).
    """

    container: Mapping[str, Any] = field(default_factory=dict)
    host_config: Mapping[str, Any] = field(default_factory=dict)


def read_env_file(path: str) -> str:
    """The text of an ``--env-file``; the default reader (regular files only,
    so a FIFO there cannot hold up a pass)."""
    return read_regular(Path(path)).decode("utf-8")


def _last(options: RunOptions, flag: str) -> str | None:
    values = options.get(flag)
    if not values:
        return None
    return str(values[-1])


def _values(options: RunOptions, flag: str) -> list[str]:
    return [str(v) for v in options.get(flag, [])]


def parse_env_file(
    text: str, *, path: str, host_env: Mapping[str, str]
) -> dict[str, str]:
    """The variables of an env file, the way ``docker run --env-file`` reads it.

    ``KEY=VALUE`` lines set a variable (the value is kept verbatim, quotes
    included); a bare ``KEY`` takes the value from ``host_env`` and is left
    out when the host does not have it; blank lines and ``#`` comments are
    skipped.
    """
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not _ENV_NAME.match(key):
            raise flag_values.bad(
                "--env-file",
                path,
                f"line {number} has an invalid variable name {key!r}",
                "write each line as KEY=VALUE with no spaces in KEY",
            )
        if sep:
            env[key] = value
        elif key in host_env:
            env[key] = host_env[key]
    return env


def _environment(
    options: RunOptions, *, reader: EnvFileReader, host_env: Mapping[str, str]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for path in _values(options, "--env-file"):
        try:
            text = reader(path)
        except OSError as exc:
            raise flag_values.bad(
                "--env-file",
                path,
                f"cannot be read ({exc.strerror or exc})",
                "create the file on the host or remove the option",
            ) from exc
        env.update(parse_env_file(text, path=path, host_env=host_env))
    env.update({str(k): str(v) for k, v in options.get("--env", {}).items()})
    return env


def _log_config(options: RunOptions) -> dict[str, Any] | None:
    driver = _last(options, "--log-driver")
    opts = _values(options, "--log-opt")
    if driver is None and not opts:
        return None
    config: dict[str, str] = {}
    for item in opts:
        key, sep, val = item.partition("=")
        if not key or not sep:
            raise flag_values.bad(
                "--log-opt", item, "is not key=value", "write it as max-size=10m"
            )
        config[key] = val
    return {"type": driver or "json-file", "config": config}


def _ports(
    options: RunOptions,
) -> tuple[list[tuple[str, str]], dict[str, list[dict[str, str]]]]:
    """Exposed ports and port bindings from ``--publish`` and ``--expose``."""
    exposed: dict[str, None] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for item in _values(options, "--publish"):
        try:
            parsed = build_port_bindings([item])
        except ValueError:
            raise flag_values.bad(
                "--publish",
                item,
                "is not a port mapping",
                "write [ip:][host_port:]container_port[/tcp|udp]",
            ) from None
        for internal, externals in parsed.items():
            key = internal if "/" in internal else f"{internal}/tcp"
            exposed[key] = None
            for external in externals:
                host_ip, host_port = (
                    ("", external) if not isinstance(external, tuple) else external
                )
                bindings.setdefault(key, []).append(
                    {"HostIp": str(host_ip or ""), "HostPort": str(host_port or "")}
                )
    for item in _values(options, "--expose"):
        match = _EXPOSE.match(item)
        if match is None:
            raise flag_values.bad(
                "--expose", item, "is not a port", "write port[-port][/tcp|udp]"
            )
        start = int(match["start"])
        end = int(match["end"] or start)
        for port in range(start, end + 1):
            exposed[f"{port}/{match['proto'] or 'tcp'}"] = None
    ports = [(key.split("/")[0], key.split("/")[1]) for key in exposed]
    return ports, bindings


def _host_config(options: RunOptions) -> dict[str, Any]:
    """The host-config half, one rung per flag family."""
    host: dict[str, Any] = {}

    binds: list[str] = []
    for item in _values(options, "--volume"):
        bind, _ = flag_values.volume(item)
        if bind is not None:
            binds.append(bind)
    if binds:
        host["binds"] = binds
    mounts = [flag_values.mount(v) for v in _values(options, "--mount")]
    if mounts:
        host["mounts"] = mounts
    devices = [flag_values.device(v) for v in _values(options, "--device")]
    if devices:
        host["devices"] = devices

    simple_lists = {
        "--device-cgroup-rule": "device_cgroup_rules",
        "--cap-add": "cap_add",
        "--cap-drop": "cap_drop",
        "--dns": "dns",
        "--dns-search": "dns_search",
        "--dns-option": "dns_opt",
        "--security-opt": "security_opt",
        "--group-add": "group_add",
    }
    for flag, key in simple_lists.items():
        values = _values(options, flag)
        if values:
            host[key] = values
    hosts = [flag_values.extra_host(v) for v in _values(options, "--add-host")]
    if hosts:
        host["extra_hosts"] = hosts

    network = _last(options, "--network")
    if network is not None:
        host["network_mode"] = flag_values.network_mode(network)
    single_values = {
        "--ipc": "ipc_mode",
        "--pid": "pid_mode",
        "--runtime": "runtime",
    }
    for flag, key in single_values.items():
        value = _last(options, flag)
        if value is not None:
            host[key] = value
    restart = _last(options, "--restart")
    if restart is not None:
        host["restart_policy"] = flag_values.restart_policy(restart)
    log_config = _log_config(options)
    if log_config is not None:
        host["log_config"] = log_config
    gpus = _last(options, "--gpus")
    if gpus is not None:
        host["device_requests"] = [flag_values.gpus(gpus)]

    shm = _last(options, "--shm-size")
    if shm is not None:
        host["shm_size"] = flag_values.size_bytes("--shm-size", shm)
    memory = _last(options, "--memory")
    if memory is not None:
        host["mem_limit"] = flag_values.size_bytes("--memory", memory)
    cpus = _last(options, "--cpus")
    if cpus is not None:
        host["nano_cpus"] = flag_values.nano_cpus(cpus)

    for flag, key in (
        ("--privileged", "privileged"),
        ("--init", "init"),
        ("--read-only", "read_only"),
    ):
        if options.get(flag) is True:
            host[key] = True
    sysctls = flag_values.key_values(
        "--sysctl", _values(options, "--sysctl"), "net.core.somaxconn=1024"
    )
    if sysctls:
        host["sysctls"] = sysctls
    tmpfs = flag_values.tmpfs(_values(options, "--tmpfs"))
    if tmpfs:
        host["tmpfs"] = tmpfs
    ulimits = flag_values.ulimits(_values(options, "--ulimit"))
    if ulimits:
        host["ulimits"] = ulimits
    _, bindings = _ports(options)
    if bindings:
        host["port_bindings"] = bindings
    return host


def _container_config(
    spec: ContainerSpec,
    *,
    reader: EnvFileReader,
    host_env: Mapping[str, str],
) -> dict[str, Any]:
    """The container-config half: identity, process and metadata."""
    options = spec.options
    labels = {str(k): str(v) for k, v in options.get("--label", {}).items()}
    labels.update(spec.labels)
    config: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "labels": labels,
        "environment": _environment(options, reader=reader, host_env=host_env),
    }
    if spec.command:
        config["command"] = list(spec.command)

    anonymous = [
        c
        for _, c in map(flag_values.volume, _values(options, "--volume"))
        if c is not None
    ]
    if anonymous:
        config["volumes"] = anonymous
    ports, _ = _ports(options)
    if ports:
        config["ports"] = ports

    single_values = {
        "--user": "user",
        "--workdir": "working_dir",
        "--hostname": "hostname",
        "--stop-signal": "stop_signal",
    }
    for flag, key in single_values.items():
        value = _last(options, flag)
        if value is not None:
            config[key] = value
    entrypoint = _last(options, "--entrypoint")
    if entrypoint is not None:
        config["entrypoint"] = shlex.split(entrypoint) or [""]
    stop_timeout = _last(options, "--stop-timeout")
    if stop_timeout is not None:
        config["stop_timeout"] = flag_values.integer(
            "--stop-timeout", stop_timeout, minimum=-1
        )
    if options.get("--tty") is True:
        config["tty"] = True
    if options.get("--interactive") is True:
        config["stdin_open"] = True
    return config


def create_args(
    spec: ContainerSpec,
    *,
    env_file_reader: EnvFileReader = read_env_file,
    host_env: Mapping[str, str] | None = None,
) -> CreateArgs:
    """The SDK arguments that create ``spec``'s container.

    Raises ``DriverSpecError`` naming the flag and value when an option
    cannot be expressed to the engine. ``--detach`` and ``--name`` are
    consumed: the container is always created detached, named
    ``spec.name``.
    """
    unknown = sorted(set(spec.options) - set(FLAGS))
    if unknown:
        raise DriverSpecError(
            f"container {spec.name}: run options {', '.join(unknown)} are not "
            f"supported; remove them from the driver params"
        )
    environ = os.environ if host_env is None else host_env
    return CreateArgs(
        container=_container_config(spec, reader=env_file_reader, host_env=environ),
        host_config=_host_config(spec.options),
    )
