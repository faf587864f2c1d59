"""The typed form of one driver profile: a single container or services.

A profile (one value of ``metadata.drivers``) either names one image
(``docker_image`` and ``params``: single-container mode) or lists
``services`` that run side by side (multi-container mode, spec "Multi-
container drivers"). This module reads either shape into frozen values
and rejects what cannot become a container with a ``DriverSpecError``
that names the twin, the profile, the field and the fix.

It does not parse ``params`` (see ``params``) or build run options.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_core.errors import DriverSpecError
from edge_core.model.names import is_valid_service_name
from edge_core.model.twins import as_text

RESTART_POLICIES = frozenset({"no", "on-failure", "unless-stopped"})
DEPENDENCY_CONDITIONS = frozenset(
    {"service_started", "service_healthy", "service_completed_successfully"}
)
DEFAULT_RESTART = "unless-stopped"
DEFAULT_STOP_TIMEOUT_S = 5
DEFAULT_GPU = "all"


class MissingImageError(DriverSpecError):
    """A service names no Docker image."""


@dataclass(frozen=True)
class Dependency:
    """One ``depends_on`` entry: wait for ``service`` to meet ``condition``."""

    service: str
    condition: str = "service_started"


@dataclass(frozen=True)
class ServiceDef:
    """One entry of a profile's ``services`` list, checked."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    params: tuple[str, ...] = ()
    prefer_gpu: bool = False
    gpu: str = DEFAULT_GPU
    restart: str = DEFAULT_RESTART
    stop_timeout_s: int = DEFAULT_STOP_TIMEOUT_S
    privileged: bool | None = None
    min_restart_interval_s: int | None = None
    host_env_file: str | None = None
    depends_on: tuple[Dependency, ...] = ()


@dataclass(frozen=True)
class DriverProfile:
    """A selected profile: ``image`` (single mode) or ``services``."""

    key: str
    image: str | None
    params: object = None
    prefer_gpu: bool = False
    gpu: str = DEFAULT_GPU
    services: tuple[ServiceDef, ...] = ()
    shared_env: Mapping[str, str] = field(default_factory=dict)
    shared_params: tuple[str, ...] = ()

    @property
    def multi_service(self) -> bool:
        return bool(self.services)


class _Reader:
    """Reads fields of one metadata object, naming it in every error."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def fail(self, name: str, problem: str, fix: str) -> DriverSpecError:
        return DriverSpecError(f"{self.where}: field {name!r} {problem}; {fix}")

    def text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(name, "is not a string", "write it as a string")
        return as_text(value)

    def flag(self, name: str) -> bool:
        value = self.data.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(name, f"is {value!r}", "write true or false")
        return value

    def count(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(name, f"is {value!r}", "write a whole number, 0 or more")
        return value

    def gpu(self) -> str:
        value = self.data.get("gpu")
        if value is None:
            return DEFAULT_GPU
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(
                "gpu", f"is {value!r}", 'write "all", a count or "device=…"'
            )
        return str(value).strip() or DEFAULT_GPU

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "is not a list of strings", "write a list of strings")
        return tuple(value)

    def env(self, name: str) -> dict[str, str]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(name, "is not an object", 'write {"KEY": "value"}')
        env: dict[str, str] = {}
        for key, item in value.items():
            env[str(key)] = self._env_value(name, str(key), item)
        return env

    def _env_value(self, name: str, key: str, item: object) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (str, int, float)):
            return str(item)
        raise self.fail(f"{name}.{key}", f"is {item!r}", "write a string or a number")


def _env_file(reader: _Reader) -> str | None:
    path = reader.text("host_env_file")
    if path is None:
        return None
    normal = posixpath.normpath(path)
    if path.startswith("/") or normal == ".." or normal.startswith("../"):
        raise reader.fail(
            "host_env_file",
            f"({path!r}) is outside the config directory",
            "give a relative path inside the config directory",
        )
    return normal


def _dependencies(reader: _Reader) -> tuple[Dependency, ...]:
    value = reader.data.get("depends_on")
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(Dependency(name) for name in value)
    if not isinstance(value, Mapping):
        raise reader.fail(
            "depends_on", "is neither a list nor an object", "list service names"
        )
    deps: list[Dependency] = []
    for name, spec in value.items():
        condition = (
            as_text(spec.get("condition")) if isinstance(spec, Mapping) else None
        )
        condition = condition or "service_started"
        if condition not in DEPENDENCY_CONDITIONS:
            raise reader.fail(
                f"depends_on.{name}",
                f"has condition {condition!r}",
                f"use one of {', '.join(sorted(DEPENDENCY_CONDITIONS))}",
            )
        deps.append(Dependency(str(name), condition))
    return tuple(deps)


def _service(raw: object, *, index: int, where: str) -> ServiceDef:
    if not isinstance(raw, Mapping):
        raise DriverSpecError(
            f"{where}: services[{index}] is not an object; write "
            f'{{"name": …, "image": …}}'
        )
    reader = _Reader(raw, f"{where} services[{index}]")
    name = reader.text("name")
    if name is None or not is_valid_service_name(name):
        raise reader.fail(
            "name",
            f"({name!r}) is missing or not usable in a container name",
            "use letters, digits, '_', '.' or '-'",
        )
    reader.where = f"{where} service {name!r}"
    image = reader.text("image")
    if image is None:
        raise MissingImageError(
            f"{reader.where}: field 'image' is missing; give the service a Docker image"
        )
    restart = reader.text("restart") or DEFAULT_RESTART
    if restart not in RESTART_POLICIES:
        raise reader.fail(
            "restart", f"is {restart!r}", "use no, on-failure or unless-stopped"
        )
    stop_timeout = reader.count("stop_timeout_s")
    privileged = reader.data.get("privileged")
    if privileged is not None and not isinstance(privileged, bool):
        raise reader.fail("privileged", f"is {privileged!r}", "write true or false")
    return ServiceDef(
        name=name,
        image=image,
        command=reader.strings("command"),
        env=reader.env("env"),
        params=reader.strings("params"),
        prefer_gpu=reader.flag("prefer_gpu"),
        gpu=reader.gpu(),
        restart=restart,
        stop_timeout_s=DEFAULT_STOP_TIMEOUT_S if stop_timeout is None else stop_timeout,
        privileged=privileged,
        min_restart_interval_s=reader.count("min_restart_interval_s"),
        host_env_file=_env_file(reader),
        depends_on=_dependencies(reader),
    )


def _services(raw: object, where: str) -> tuple[ServiceDef, ...]:
    if not isinstance(raw, list) or not raw:
        raise DriverSpecError(
            f"{where}: field 'services' is not a non-empty list; list one "
            f"object per container"
        )
    services = tuple(
        _service(item, index=index, where=where) for index, item in enumerate(raw)
    )

    names = [service.name for service in services]
    for service in services:
        if names.count(service.name) > 1:
            raise DriverSpecError(
                f"{where}: service name {service.name!r} is used twice; give "
                f"each service its own name"
            )
        for dep in service.depends_on:
            if dep.service not in names or dep.service == service.name:
                raise DriverSpecError(
                    f"{where}: service {service.name!r} depends on "
                    f"{dep.service!r}, which is not another service of this "
                    f"profile; fix depends_on"
                )
    return services


def read_profile(
    key: str, profile: Mapping[str, Any], *, twin_uuid: str
) -> DriverProfile:
    """The typed form of one selected profile.

    ``image`` is ``None`` when a single-container profile names none; the
    caller decides whether an override supplies it.
    """
    where = f"twin {twin_uuid} driver profile {key!r}"
    reader = _Reader(profile, where)

    if profile.get("services") is not None:
        return DriverProfile(
            key=key,
            image=None,
            services=_services(profile.get("services"), where),
            shared_env=reader.env("shared_env"),
            shared_params=reader.strings("shared_params"),
        )

    return DriverProfile(
        key=key,
        image=reader.text("docker_image"),
        params=profile.get("params"),
        prefer_gpu=reader.flag("prefer_gpu"),
        gpu=reader.gpu(),
    )
