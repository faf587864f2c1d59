"""Everything ``status`` shows, gathered read-only.

This module asks each part once (files, the backend, the broker, the
Docker engine, the daemon's state file) and turns each answer into a
``Check``: ok or not, one line of detail, and the next step when
something is wrong. It writes nothing, not even ``fingerprint.json``
(protocol.md 7b item 27). Rendering is the CLI's job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_core import __version__
from edge_core.cloud.mqtt import check_broker
from edge_core.cloud.rest import CloudClient
from edge_core.config.credentials import (
    CREDENTIALS_FILE,
    Credentials,
    apply_envs,
    load_credentials,
)
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
from edge_core.runtime.container import ContainerState, ContainerView
from edge_core.runtime.docker import DockerRuntime
from edge_core.state import DaemonState, DriverStatus, read_state
from edge_core.twins.desired_state import FILE_NAME as DESIRED_STATE_FILE
from edge_core.twins.desired_state import saved_time
from edge_core.wiring import mqtt_config

_CHECK_TIMEOUT = 5.0
# Less free space than this on the config dir's file system is shown as full.
LOW_DISK_BYTES = 1 << 20


@dataclass(frozen=True)
class Check:
    """One line of the status screen."""

    name: str
    ok: bool | None
    detail: str
    fix: str | None = None


MISSING_STATE = "missing"
ORPHAN = "orphan"
RESTART_HINT = "sudo systemctl restart cyberwave-edge-core"


@dataclass(frozen=True)
class ContainerRow:
    """One driver container, or a driver that should have one.

    ``outcome`` is the daemon's word for the driver (running, adopted,
    waiting, failed, flapping, held) or ``orphan``; ``restarts`` and
    ``parked_until`` (epoch) describe a flapping driver.
    """

    name: str
    twin_uuid: str | None
    image: str
    state: str
    note: str = ""
    outcome: str | None = None
    restarts: int | None = None
    parked_until: float | None = None

    @property
    def ok(self) -> bool | None:
        """True when it runs as wanted, None for an orphan, else False."""
        if self.outcome == ORPHAN:
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


def _environment(config_dir: Path, state: DaemonState | None) -> Check:
    try:
        environment = load_environment(config_dir)
    except ConfigError as exc:
        return Check("environment", False, str(exc))
    if state is not None and _daemon_alive(state) and state.environment_error:
        # The file reads well, but the backend refuses what it selects.
        return Check(
            "environment",
            False,
            f"{environment.uuid} cannot be downloaded: {state.environment_error}",
            "select an environment this device's token can see "
            '(run "sudo cyberwave edge install" again)',
        )
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
        # Its drivers run on under Docker, but nobody revives, updates or
        # restarts them: that is wrong, and the exit code says so.
        ended = "stopped" if state.phase == "stopped" else "ended without stopping"
        return Check(
            "daemon",
            False,
            f"not running ({ended}, last phase: {state.phase}): drivers are "
            "not supervised and remote commands are not received",
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
    detail = f"{len(views)} managed container(s)"
    return Check("docker", True, detail), container_rows(views, state)


def container_rows(
    views: Sequence[ContainerView],
    state: DaemonState | None,
    *,
    now: float | None = None,
) -> tuple[ContainerRow, ...]:
    """The rows of the engine's containers, then of drivers that have none.

    ``state`` adds the daemon's outcome to each container: why it failed,
    why it is held, until when it is parked, or that it is an orphan.
    """
    moment = time.time() if now is None else now
    # A twin whose driver never got a container has no name: key it by twin.
    drivers = state.drivers if state else ()
    outcomes = {d.container_name or d.twin_uuid: d for d in drivers}
    orphans = set(state.orphans) if state else set()
    rows: list[ContainerRow] = []
    for view in sorted(views, key=lambda v: v.name):
        docker_state = str(view.state.value)
        if view.name in orphans:
            rows.append(_orphan_row(view, docker_state))
            continue
        outcome = outcomes.get(view.name)
        row = _driver_row(
            outcome,
            name=view.name,
            twin_uuid=view.twin_uuid,
            image=view.image,
            state=docker_state,
            now=moment,
        )
        if not row.note and not view.running:
            row = replace(row, note=_engine_note(view), restarts=view.restart_count)
        rows.append(row)
    present = {view.name for view in views}
    for key, outcome in outcomes.items():
        if key in present:
            continue
        absent = _absent_row(outcome, moment)
        if absent is not None:
            rows.append(absent)
    return tuple(rows)


def _orphan_row(view: ContainerView, state: str) -> ContainerRow:
    force = " -f" if view.running else ""
    note = (
        "orphan: its twin is no longer linked to this edge; remove it with: "
        f"docker rm{force} {view.name}"
    )
    return ContainerRow(view.name, view.twin_uuid, view.image, state, note, ORPHAN)


def _driver_row(
    outcome: DriverStatus | None,
    *,
    name: str,
    twin_uuid: str | None,
    image: str,
    state: str,
    now: float,
) -> ContainerRow:
    """A row for a container the engine knows, with the daemon's word on it."""
    if outcome is None:
        return ContainerRow(name, twin_uuid, image, state)
    return ContainerRow(
        name,
        twin_uuid,
        image,
        state,
        _outcome_note(outcome, now),
        outcome.outcome,
        outcome.restarts,
        outcome.parked_until,
    )


def _engine_note(view: ContainerView) -> str:
    """What the engine says of a driver that does not run, when the daemon
    said nothing: a crash Docker keeps restarting, a pause, an exit."""
    code = f", last exit code {view.exit_code}" if view.exit_code is not None else ""
    if view.state is ContainerState.PAUSED:
        return f"paused by hand; left alone until: docker unpause {view.name}"
    if view.state is ContainerState.RESTARTING or view.restart_count:
        return (
            f"keeps crashing: Docker restarted it {view.restart_count} times{code}; "
            "it is stopped if it restarts too often (the driver's log says why)"
        )
    return f"{view.state.value}{code}"


def _outcome_note(outcome: DriverStatus, now: float) -> str:
    """What is wrong with a driver and what to do, or "" when nothing is."""
    if outcome.outcome == "failed":
        return f"failed: {outcome.reason}"
    if outcome.outcome == "flapping":
        return _flapping_note(outcome, now)
    if outcome.outcome == "paused":
        return outcome.reason or "paused"
    if outcome.outcome == "held":
        # A phase is that of the failed launch whose retry is waiting.
        phase = f" ({outcome.phase})" if outcome.phase else ""
        return f"held{phase}: {outcome.reason or 'waiting to be started again'}"
    return ""


def _flapping_note(outcome: DriverStatus, now: float) -> str:
    restarts = (
        f"{outcome.restarts} restarts"
        if outcome.restarts is not None
        else "too many restarts"
    )
    logs = f"docker logs {outcome.container_name}"
    until = outcome.parked_until
    if until is not None and until > now:
        at = _when(until, now)
        return (
            f"flapping: {restarts} in a loop, so the edge core stopped it; "
            f"fix the driver or its device ({logs}); it retries at {at}, "
            "or send restart_edge_core"
        )
    return (
        f"flapping: {restarts} in a loop; started once more and watched until it "
        f"runs steadily; if it loops again, fix the driver or its device ({logs})"
    )


def _absent_row(outcome: DriverStatus, now: float) -> ContainerRow | None:
    """A row for a driver the daemon knows that has no container."""
    if outcome.outcome == "failed":
        return ContainerRow(
            outcome.container_name,
            outcome.twin_uuid,
            outcome.image,
            "not running",
            f"failed ({outcome.phase}): {outcome.reason}",
            outcome.outcome,
        )
    if not outcome.container_name:
        return None
    # Held after a failed launch there may never have been a container;
    # otherwise it existed and is gone.
    failed_launch = outcome.outcome == "held" and outcome.phase
    state = "not running" if failed_launch else MISSING_STATE
    note = _outcome_note(outcome, now) or (
        # Started or adopted by the daemon, gone from the engine since.
        "removed outside the edge core; it is recreated after "
        "CYBERWAVE_DRIVER_REMOVED_REVIVAL_SECONDS, or at once by restarting "
        f"the edge core ({RESTART_HINT})"
    )
    return ContainerRow(
        outcome.container_name,
        outcome.twin_uuid,
        outcome.image,
        state,
        note,
        outcome.outcome,
        outcome.restarts,
        outcome.parked_until,
    )


# -- what the daemon says about its links and itself -----------------------


def _daemon_alive(state: DaemonState) -> bool:
    if state.phase in ("stopped", "token_rejected"):
        return False
    return _pid_alive(state.pid)


def _backend_offline(state: DaemonState, config_dir: Path, now: float) -> Check | None:
    if state.offline_since is None:
        return None
    refused = state.backend_token_refused
    how = "refusing the token" if refused else "unreachable"
    detail = f"{how} since {_when(state.offline_since, now)}"
    if state.backend_error:
        detail += f": {state.backend_error}"
    saved = _desired_saved_at(config_dir)
    if state.desired_known is not False and saved is not None:
        detail += f"; running from {DESIRED_STATE_FILE} saved at {_when(saved, now)}"
    elif saved is not None:
        detail += (
            f"; {DESIRED_STATE_FILE} is not used (another environment, or not "
            "usable), so new drivers wait for the backend"
        )
    elif (config_dir / DESIRED_STATE_FILE).exists():
        detail += (
            f"; {DESIRED_STATE_FILE} is unusable (the next download replaces "
            "it), so new drivers wait for the backend"
        )
    else:
        detail += f"; no {DESIRED_STATE_FILE} yet, so drivers wait for the backend"
    if refused:
        fix = (
            f'put a valid token in {CREDENTIALS_FILE} (run "sudo cyberwave edge '
            'install" to log in again); it is read again at the next call'
        )
    else:
        fix = "it retries by itself; check the network and CYBERWAVE_BASE_URL"
    return Check("backend", False, detail, fix)


def _broker_down(state: DaemonState, now: float) -> Check | None:
    if state.broker_down_since is None:
        return None
    return Check(
        "mqtt session",
        False,
        f"broker unreachable since {_when(state.broker_down_since, now)}; "
        "driver logs are buffered and commands wait until it is back",
        "it reconnects by itself; check CYBERWAVE_MQTT_HOST/PORT and the network",
    )


def _log_drops(state: DaemonState) -> Check | None:
    if state.log_lines_dropped <= 0:
        return None
    return Check(
        "driver logs",
        None,
        f"{state.log_lines_dropped} driver log line(s) dropped while the broker "
        "was unreachable",
        "raise CYBERWAVE_DRIVER_LOG_BUFFER_LINES to keep more lines while offline",
    )


def _last_restart(state: DaemonState, now: float) -> Check | None:
    """The last ``restart_edge_core`` command and how it ended."""
    restart = state.restart
    if not isinstance(restart, Mapping):
        return None
    phase = str(restart.get("phase") or "unknown")
    at = saved_time(restart.get("at"))
    detail = f"last restart_edge_core {phase.replace('_', ' ')}"
    if at is not None:
        detail += f" at {_when(at, now)}"
    if restart.get("request_id"):
        detail += f" (request {restart['request_id']})"
    if phase == "completed":
        return Check("remote restart", True, detail)
    if phase == "failed":
        detail += f": {restart.get('error') or 'no error given'}"
        return Check(
            "remote restart",
            None,
            detail,
            f"send restart_edge_core again, or run: {RESTART_HINT}",
        )
    return Check("remote restart", None, detail)


def _twin_files(state: DaemonState) -> Check | None:
    problems = state.twin_file_problems
    if not problems:
        return None
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return Check(
        "twin files",
        False,
        f"{shown}{more}",
        "the log (journalctl -u cyberwave-edge-core) has the details; a twin "
        "file is never deleted or truncated, so nothing is lost meanwhile",
    )


def _zenoh(state: DaemonState) -> Check | None:
    if not state.zenoh_router:
        return None
    if state.zenoh_router_error:
        return Check(
            "zenoh router",
            False,
            f"container {state.zenoh_router} does not run: {state.zenoh_router_error}",
            "check ZENOH_ROUTER_IMAGE (the image must be pullable or present "
            "locally) and ZENOH_ROUTER_PORT; it is tried again by itself",
        )
    note = state.zenoh_router_note
    if state.zenoh_router_state == "paused":
        return Check(
            "zenoh router",
            False,
            f"container {state.zenoh_router} is {note or 'paused'}",
        )
    if note:
        return Check(
            "zenoh router",
            None,
            f"enabled: the router {note}",
            "rename or remove the other container by hand; the router then "
            "gets its name back by itself",
        )
    return Check("zenoh router", True, f"enabled: container {state.zenoh_router}")


def _daemon_checks(state: DaemonState, config_dir: Path, now: float) -> list[Check]:
    """The rows only the daemon's state file can tell."""
    found: list[Check | None] = []
    if _daemon_alive(state):
        found += [_backend_offline(state, config_dir, now), _broker_down(state, now)]
        found.append(_twin_files(state))
    found += [_log_drops(state), _last_restart(state, now), _zenoh(state)]
    return [check for check in found if check is not None]


def _disk(config_dir: Path) -> Check | None:
    """A row only when the config dir cannot be written: full or read-only."""
    try:
        usage = os.statvfs(config_dir)
    except OSError:
        return None
    unwritable = [
        directory
        for directory in (config_dir, config_dir / "run")
        if directory.is_dir() and not os.access(directory, os.W_OK)
    ]
    if usage.f_flag & os.ST_RDONLY or unwritable:
        where = unwritable[0] if unwritable else config_dir
        return Check(
            "disk",
            False,
            f"{where} cannot be written (read-only): twin files, "
            "desired-state.json and the daemon's state are not saved; the files "
            "there are kept as they are",
            "make it writable again (a file system mounted read-only after an "
            "error needs fsck and a remount)",
        )
    free = usage.f_bavail * usage.f_frsize
    if free >= LOW_DISK_BYTES:
        return None
    return Check(
        "disk",
        False,
        f"the file system of {config_dir} is full ({free // 1024} KiB free): "
        "twin files, desired-state.json and the daemon's state cannot be saved; "
        "the files there are kept as they are",
        "free some space there (old logs, unused images: docker image prune)",
    )


def _desired_saved_at(config_dir: Path) -> float | None:
    """When the desired state the daemon falls back on was downloaded."""
    try:
        document = read_json_file(config_dir / DESIRED_STATE_FILE, what="desired state")
    except ConfigError:
        return None
    if not isinstance(document, Mapping):
        return None
    return saved_time(document.get("fetched_at"))


def _when(epoch: float, now: float) -> str:
    """``14:05 UTC`` for today (UTC), else ``2026-12-03 14:05 UTC``."""
    moment = time.gmtime(epoch)
    if time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d", time.gmtime(now)):
        return time.strftime("%H:%M UTC", moment)
    return time.strftime("%Y-%m-%d %H:%M UTC", moment)


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
    state = read_state(config_dir)
    checks.append(_environment(config_dir, state))
    disk = _disk(config_dir)
    if disk is not None:
        checks.append(disk)
    checks.append(_daemon(state))
    if state is not None:
        checks += _daemon_checks(state, config_dir, time.time())
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
