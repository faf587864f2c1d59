"""Everything ``status`` shows, gathered read-only.

This module asks each part once (files, the backend, the broker, the
Docker engine, the daemon's state file) and turns each answer into a
``Check``: ok or not, one line of detail, and the next step when
something is wrong. It writes nothing, not even ``fingerprint.json``
(protocol.md 7b item 27). Rendering is the CLI's job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_core import __version__
from edge_core.cloud.mqtt import check_broker
from edge_core.cloud.rest import CloudClient
from edge_core.config.credentials import Credentials, apply_envs, load_credentials
from edge_core.config.environment import load_environment
from edge_core.config.files import read_json_file
from edge_core.config.fingerprint import resolve_fingerprint
from edge_core.config.paths import resolve_config_dir
from edge_core.config.settings import Settings, load_settings
from edge_core.errors import (
    AuthError,
    ConfigError,
    EdgeCoreError,
    TemporaryError,
)
from edge_core.runtime.docker import DockerRuntime
from edge_core.state import DaemonState, read_state
from edge_core.wiring import mqtt_config

_CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    """One line of the status screen."""

    name: str
    ok: bool | None
    detail: str
    fix: str | None = None


ORPHAN_NOTE = "orphan: its twin is no longer linked (remove with docker rm)"
MISSING_STATE = "missing"


@dataclass(frozen=True)
class ContainerRow:
    """One driver container, or a driver that should have one."""

    name: str
    twin_uuid: str | None
    image: str
    state: str
    note: str = ""

    @property
    def ok(self) -> bool | None:
        """True when it runs as wanted, None for an orphan, else False."""
        if self.note == ORPHAN_NOTE:
            return None
        return self.state == "running" and not self.note


@dataclass(frozen=True)
class StatusReport:
    version: str
    config_dir: str
    checks: tuple[Check, ...]
    containers: tuple[ContainerRow, ...] = ()
    warnings: tuple[str, ...] = ()
    daemon: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """No check failed and every driver container runs as wanted."""
        checks = all(check.ok is not False for check in self.checks)
        return checks and all(row.ok is not False for row in self.containers)

    def to_json(self) -> dict[str, Any]:
        rows = [asdict(row) | {"ok": row.ok} for row in self.containers]
        return asdict(self) | {"containers": rows, "healthy": self.healthy}


def _credentials(config_dir: Path) -> tuple[Credentials | None, Check]:
    try:
        credentials = load_credentials(config_dir)
    except ConfigError as exc:
        return None, Check("credentials", False, str(exc))
    return credentials, Check("credentials", True, str(credentials.path))


def _token(settings: Settings, credentials: Credentials) -> Check:
    client = CloudClient(
        base_url=settings.base_url,
        token=lambda: credentials.token,
        timeout=_CHECK_TIMEOUT,
        retries=0,
        workspace_id=settings.workspace_id,
        user_agent_prefix=settings.client_user_agent,
        version=__version__,
    )
    try:
        client.check_token()
    except AuthError as exc:
        return Check(
            "token",
            False,
            f"rejected by {settings.base_url}: {exc}",
            'run "sudo cyberwave edge install" to log in again',
        )
    except TemporaryError as exc:
        return Check(
            "token",
            False,
            f"backend unavailable: {exc}",
            "the edge core keeps retrying; check the network",
        )
    except EdgeCoreError as exc:
        return Check("token", False, str(exc))
    finally:
        client.close()
    return Check("token", True, f"accepted by {settings.base_url}")


def _broker(settings: Settings, credentials: Credentials) -> Check:
    config = mqtt_config(settings, credentials.token)
    config = type(config)(
        **{**asdict(config), "connect_timeout": 3.0, "connect_attempts": 1}
    )
    where = f"{config.host}:{config.port}{' (TLS)' if config.use_tls else ''}"
    try:
        check_broker(config)
    except EdgeCoreError as exc:
        return Check(
            "mqtt",
            False,
            f"{where}: {exc}",
            "check CYBERWAVE_MQTT_HOST/PORT and the network",
        )
    return Check("mqtt", True, f"{where} reachable")


def _environment(config_dir: Path) -> Check:
    try:
        environment = load_environment(config_dir)
    except ConfigError as exc:
        return Check("environment", False, str(exc))
    twins = environment.twin_uuids
    scope = "all linked twins" if twins is None else f"{len(twins)} selected twin(s)"
    return Check("environment", True, f"{environment.uuid} ({scope})")


def _edge(config_dir: Path) -> Check:
    path = config_dir / "edge.json"
    if not path.exists():
        return Check("edge", None, "not registered yet (no edge.json)")
    try:
        edge = read_json_file(path, what="edge registration")
    except ConfigError as exc:
        return Check("edge", False, str(exc))
    uuid = edge.get("uuid") if isinstance(edge, dict) else None
    return Check("edge", True, f"registered as {uuid}")


def _daemon(state: DaemonState | None) -> Check:
    if state is None:
        return Check("daemon", None, "has not run yet with this config dir")
    if state.phase == "token_rejected":
        return Check(
            "daemon",
            False,
            "stopped: the token was rejected",
            'run "sudo cyberwave edge install" to log in again',
        )
    alive = _pid_alive(state.pid)
    if not alive or state.phase == "stopped":
        return Check(
            "daemon",
            None,
            f"not running (last phase: {state.phase})",
            "sudo systemctl start cyberwave-edge-core",
        )
    if state.phase == "waiting_for_backend":
        return Check(
            "daemon",
            False,
            f"running (pid {state.pid}), waiting for the backend: "
            f"{state.backend_error}",
            "it retries by itself; check the network and the base URL",
        )
    return Check("daemon", True, f"running (pid {state.pid}), phase {state.phase}")


def _twins(state: DaemonState) -> Check:
    """How many twins are linked, and why some have no driver of their own."""
    linked = len(state.linked_twins)
    detail = f"{linked} linked to this edge"
    for uuid, reason in sorted(state.without_driver.items()):
        detail += f"\n{uuid[:8]}: {reason}"
    return Check("twins", True, detail)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _containers(
    fingerprint: str, state: DaemonState | None
) -> tuple[Check, tuple[ContainerRow, ...]]:
    try:
        runtime = DockerRuntime.connect(timeout=_CHECK_TIMEOUT)
        views = runtime.list_managed(fingerprint)
    except EdgeCoreError as exc:
        return Check("docker", False, str(exc)), ()
    # A twin whose driver never got a container has no name: key it by twin.
    drivers = state.drivers if state else ()
    outcomes = {d.container_name or d.twin_uuid: d for d in drivers}
    orphans = set(state.orphans) if state else set()
    rows: list[ContainerRow] = []
    for view in sorted(views, key=lambda v: v.name):
        note = ""
        outcome = outcomes.get(view.name)
        if view.name in orphans:
            note = ORPHAN_NOTE
        elif outcome is not None and outcome.outcome == "failed":
            note = f"failed: {outcome.reason}"
        rows.append(
            ContainerRow(
                view.name,
                view.twin_uuid,
                view.image,
                str(getattr(view.state, "value", view.state)),
                note,
            )
        )
    present = {row.name for row in rows}
    for name, outcome in outcomes.items():
        if name in present:
            continue
        if outcome.outcome == "failed":
            rows.append(
                ContainerRow(
                    outcome.container_name,
                    outcome.twin_uuid,
                    outcome.image,
                    "not running",
                    f"failed ({outcome.phase}): {outcome.reason}",
                )
            )
        elif outcome.container_name:
            # Started or adopted by the daemon, gone from the engine since.
            rows.append(
                ContainerRow(
                    outcome.container_name,
                    outcome.twin_uuid,
                    outcome.image,
                    MISSING_STATE,
                    "removed outside the edge core; restart the edge core "
                    "(sudo systemctl restart cyberwave-edge-core) to start it again",
                )
            )
    detail = f"{len(views)} managed container(s)"
    return Check("docker", True, detail), tuple(rows)


def gather(
    environ: MutableMapping[str, str] | None = None, *, online: bool = True
) -> StatusReport:
    """Build the status report; ``online=False`` skips backend and broker."""
    env: MutableMapping[str, str] = dict(os.environ if environ is None else environ)
    config_dir = resolve_config_dir(env)
    credentials, cred_check = _credentials(config_dir)
    checks: list[Check] = [cred_check]
    envs: Mapping[str, str] = credentials.envs if credentials else {}
    apply_envs(envs, env)
    settings = load_settings(env, envs=envs, config_dir=config_dir)
    if credentials is not None and online:
        checks.append(_token(settings, credentials))
        checks.append(_broker(settings, credentials))
    try:
        fingerprint = resolve_fingerprint(config_dir, env, persist=False)
        saved = (config_dir / "fingerprint.json").exists()
        checks.append(
            Check(
                "fingerprint",
                True,
                fingerprint + ("" if saved else " (computed, not saved yet)"),
            )
        )
    except ConfigError as exc:
        fingerprint = ""
        checks.append(Check("fingerprint", False, str(exc)))
    checks.append(_edge(config_dir))
    checks.append(_environment(config_dir))
    state = read_state(config_dir)
    checks.append(_daemon(state))
    if state is not None and state.linked_twins:
        checks.append(_twins(state))
    rows: tuple[ContainerRow, ...] = ()
    if fingerprint:
        docker_check, rows = _containers(fingerprint, state)
        checks.append(docker_check)
    return StatusReport(
        version=__version__,
        config_dir=str(config_dir),
        checks=tuple(checks),
        containers=rows,
        warnings=tuple(settings.warnings),
        daemon=state.to_json() if state else None,
    )
