"""Parsers for the value of one ``docker run`` flag, in the engine's shape.

Each function takes the text a driver wrote after one flag (``--mount``,
``--device``, ``--gpus`` …) and returns what the Engine API expects for it,
or raises ``DriverSpecError`` naming the flag, the value and the fix. They
know nothing about specs or other flags; ``translate`` combines them.
"""

from __future__ import annotations

from typing import Any

from docker.errors import DockerException
from docker.utils import parse_bytes

from edge_core.errors import DriverSpecError

_VOLUME_MODES = frozenset(
    {
        "ro",
        "rw",
        "z",
        "Z",
        "nocopy",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "consistent",
        "cached",
        "delegated",
    }
)
_NETWORK_MODES = frozenset({"host", "none", "bridge", "default"})
_RESTART_NAMES = frozenset({"no", "always", "unless-stopped", "on-failure"})


def bad(flag: str, value: object, problem: str, fix: str) -> DriverSpecError:
    """The refusal of one flag value: names the flag, the value and the fix."""
    return DriverSpecError(f"{flag} {value!r}: {problem}; {fix}")


def volume(value: str) -> tuple[str | None, str | None]:
    """A bind string, or the container path of an anonymous volume."""
    parts = value.split(":")
    if len(parts) == 1:
        if not value.startswith("/"):
            raise bad(
                "--volume",
                value,
                "is not an absolute path",
                "write host:container[:mode]",
            )
        return None, value
    if len(parts) > 3 or not parts[0] or not parts[1].startswith("/"):
        raise bad(
            "--volume",
            value,
            "is not host:container[:mode] with an absolute container path",
            "write it as /host/path:/container/path[:ro]",
        )
    if len(parts) == 3:
        modes = parts[2].split(",")
        unknown = [m for m in modes if m not in _VOLUME_MODES]
        if unknown:
            raise bad(
                "--volume",
                value,
                f"has an unknown mode {','.join(unknown)!r}",
                "use ro or rw (optionally with z, Z or a propagation mode)",
            )
    return value, None


def bool_option(flag: str, value: str, key: str) -> bool:
    """A ``key`` or ``key=true|false`` option inside a ``--mount`` value."""
    lowered = value.lower()
    if lowered in ("", "1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise bad(
        flag, value, f"{key} must be true or false", f"write {key} or {key}=false"
    )


def mount(value: str) -> dict[str, Any]:
    """One ``--mount`` in the engine's ``Mount`` format."""
    fields: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        fields[key.strip().lower()] = val.strip() if sep else ""
    mount_type = fields.pop("type", "volume") or "volume"
    if mount_type not in ("bind", "volume", "tmpfs"):
        raise bad(
            "--mount",
            value,
            f"type {mount_type!r} is not supported",
            "use bind, volume or tmpfs",
        )
    source = fields.pop("source", None) or fields.pop("src", None) or ""
    target = ""
    for key in ("target", "destination", "dst"):
        target = fields.pop(key, "") or target
    if not target.startswith("/"):
        raise bad(
            "--mount", value, "has no absolute target", "add target=/path/in/container"
        )
    if mount_type == "bind" and not source:
        raise bad(
            "--mount",
            value,
            "is a bind mount without a source",
            "add source=/host/path",
        )
    mount: dict[str, Any] = {"Type": mount_type, "Source": source, "Target": target}
    readonly = None
    for key in ("readonly", "ro"):
        if key in fields:
            readonly = bool_option("--mount", fields.pop(key), key)
    if readonly:
        mount["ReadOnly"] = True
    if "bind-propagation" in fields:
        mount["BindOptions"] = {"Propagation": fields.pop("bind-propagation")}
    if "volume-nocopy" in fields:
        nocopy = bool_option("--mount", fields.pop("volume-nocopy"), "volume-nocopy")
        mount["VolumeOptions"] = {"NoCopy": nocopy}
    tmpfs: dict[str, int] = {}
    if "tmpfs-size" in fields:
        tmpfs["SizeBytes"] = size_bytes("--mount", fields.pop("tmpfs-size"))
    if "tmpfs-mode" in fields:
        tmpfs["Mode"] = integer("--mount", fields.pop("tmpfs-mode"), base=8)
    if tmpfs:
        mount["TmpfsOptions"] = tmpfs
    fields.pop("consistency", None)
    if fields:
        raise bad(
            "--mount",
            value,
            f"has unsupported keys {', '.join(sorted(fields))}",
            "use type, source, target, readonly, bind-propagation, "
            "volume-nocopy, tmpfs-size or tmpfs-mode",
        )
    return mount


def device(value: str) -> dict[str, str]:
    """One ``--device host[:container[:perms]]`` in the engine's format."""
    parts = value.split(":")
    host = parts[0]
    container = host
    perms = "rwm"
    if len(parts) == 2 and not parts[1].startswith("/"):
        perms = parts[1]
    elif len(parts) >= 2:
        container = parts[1]
        perms = parts[2] if len(parts) == 3 else perms
    if len(parts) > 3 or not host.startswith("/") or not container.startswith("/"):
        raise bad(
            "--device",
            value,
            "is not host[:container[:perms]]",
            "write it as /dev/ttyUSB0[:/dev/ttyUSB0[:rwm]]",
        )
    if not perms or set(perms) - set("rwm"):
        raise bad(
            "--device",
            value,
            f"has invalid permissions {perms!r}",
            "use a combination of r, w and m",
        )
    return {
        "PathOnHost": host,
        "PathInContainer": container,
        "CgroupPermissions": perms,
    }


def extra_host(value: str) -> str:
    """``--add-host name:ip`` (or ``name=ip``) as the engine's ``name:ip``."""
    name, sep, address = value.partition("=")
    if not sep:
        name, sep, address = value.partition(":")
    if not name or not address:
        raise bad(
            "--add-host",
            value,
            "is not host:ip",
            "write it as name:1.2.3.4 or name:host-gateway",
        )
    return f"{name}:{address}"


def integer(
    flag: str, value: str, *, base: int = 10, minimum: int | None = None
) -> int:
    """A whole number given to ``flag``, at least ``minimum`` when set."""
    try:
        number = int(value, base)
    except ValueError:
        raise bad(flag, value, "is not a whole number", "write an integer") from None
    if minimum is not None and number < minimum:
        raise bad(flag, value, f"is below {minimum}", f"use {minimum} or more")
    return number


def size_bytes(flag: str, value: str) -> int:
    """A size such as ``512m`` in bytes; must be positive."""
    try:
        size = int(parse_bytes(value))
    except (DockerException, ValueError, TypeError):
        raise bad(
            flag, value, "is not a size", "write a size such as 512m or 2g"
        ) from None
    if size <= 0:
        raise bad(
            flag, value, "must be larger than zero", "write a size such as 512m or 2g"
        )
    return size


def restart_policy(value: str) -> dict[str, Any]:
    """The engine's ``RestartPolicy`` for a ``--restart`` value."""
    name, _, retries = value.partition(":")
    if name not in _RESTART_NAMES or (retries and name != "on-failure"):
        raise bad(
            "--restart",
            value,
            "is not a restart policy",
            "use no, always, unless-stopped or on-failure[:N]",
        )
    policy: dict[str, Any] = {"Name": name}
    if name == "on-failure":
        policy["MaximumRetryCount"] = (
            integer("--restart", retries, minimum=0) if retries else 0
        )
    return policy


def gpus(value: str) -> dict[str, Any]:
    """``--gpus`` as the engine's ``DeviceRequest``."""
    text = value.strip().strip("'\"")
    count: int | None = None
    device_ids: list[str] = []
    capabilities: list[str] = []
    driver = ""
    continuing: list[str] | None = None
    for raw in text.split(","):
        token = raw.strip().strip("'\"")
        if not token:
            continue
        key, sep, val = token.partition("=")
        if not sep and continuing is not None:
            continuing.append(token)
        elif not sep and token == "all":
            count = -1
        elif not sep and token.isdigit():
            count = int(token)
        elif key == "count":
            count = -1 if val == "all" else integer("--gpus", val, minimum=1)
        elif key in ("device", "devices"):
            device_ids.append(val)
            continuing = device_ids
        elif key == "capabilities":
            capabilities.append(val)
            continuing = capabilities
        elif key == "driver":
            driver = val
        else:
            raise bad(
                "--gpus",
                value,
                f"has an unknown part {token!r}",
                'use all, a number or "device=0,1"',
            )
    if count is not None and device_ids:
        raise bad(
            "--gpus", value, "sets both a count and device ids", "use one of them"
        )
    if count is None and not device_ids:
        count = -1
    if "gpu" not in capabilities:
        capabilities.append("gpu")
    return {
        "Driver": driver,
        "Count": count or 0,
        "DeviceIDs": device_ids,
        "Capabilities": [capabilities],
        "Options": {},
    }


def nano_cpus(value: str) -> int:
    """``--cpus 1.5`` as the engine's nano CPUs."""
    try:
        cpus = float(value)
    except ValueError:
        cpus = -1.0
    if not cpus > 0:
        raise bad(
            "--cpus",
            value,
            "is not a positive number",
            "write a number of CPUs such as 1.5",
        )
    return round(cpus * 1e9)


def key_values(flag: str, items: list[str], example: str) -> dict[str, str]:
    """``key=value`` items as a map (``--sysctl``)."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not key or not sep:
            raise bad(flag, item, "is not key=value", f"write it as {example}")
        result[key] = val
    return result


def tmpfs(items: list[str]) -> dict[str, str]:
    """``--tmpfs /path[:options]`` items as a path-to-options map."""
    result: dict[str, str] = {}
    for item in items:
        path, _, opts = item.partition(":")
        if not path.startswith("/"):
            raise bad(
                "--tmpfs", item, "has no absolute path", "write it as /path[:options]"
            )
        result[path] = opts
    return result


def ulimits(items: list[str]) -> list[dict[str, Any]]:
    """``--ulimit name=soft[:hard]`` items as the engine's ulimits."""
    limits: list[dict[str, Any]] = []
    for item in items:
        name, sep, values = item.partition("=")
        if not name or not sep:
            raise bad(
                "--ulimit",
                item,
                "is not name=soft[:hard]",
                "write it as nofile=1024:2048",
            )
        soft, _, hard = values.partition(":")
        soft_value = integer("--ulimit", soft, minimum=-1)
        hard_value = integer("--ulimit", hard, minimum=-1) if hard else soft_value
        limits.append({"name": name, "soft": soft_value, "hard": hard_value})
    return limits


def network_mode(value: str) -> str:
    """``--network`` as the host config's network mode."""
    if value in _NETWORK_MODES or value.startswith("container:"):
        return value
    if not value or any(ch.isspace() for ch in value):
        raise bad(
            "--network",
            value,
            "is not a network name",
            "use host, bridge, none or a network name",
        )
    return value
