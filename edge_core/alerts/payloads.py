"""The bodies of the alert calls, as the backend expects them (protocol.md 1.8).

Pure functions over plain data: the create payload of R10, the titles
and texts of the alert types the driver lifecycle raises, the metadata of
a ``driver_starting`` card (creation baseline, derived percentages,
failure patch) and the metadata patches of the ``edge_core_restart``
lifecycle. Anything that may carry text from Docker or the backend goes
through a redaction function first, so a token or a signed-URL signature
never reaches the backend.

It sends nothing and keeps no state; ``book`` and ``outbox`` do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from edge_core.logsetup import redact as redact_secrets
from edge_core.model.failures import TITLE_START_FAILED

Redact = Callable[[str], str]

SOURCE_TYPE = "edge"
CATEGORY = "technical"
TEXT_LIMIT = 500

DRIVER_STARTING = "driver_starting"
DRIVER_START_FAILURE = "driver_start_failure"
DRIVER_RESTART_LOOP = "driver_restart_loop"
DRIVER_HEALTH = "driver_health"
EDGE_CORE_RESTART = "edge_core_restart"

SEVERITIES = ("info", "warning", "error", "critical")

STARTING_TITLE = "Driver starting"
STARTING_DESCRIPTION = "Your robot is starting up. This may take a few minutes."
RESTART_LOOP_TITLE = "Driver restart loop detected"
HEALTH_TITLE = "Driver container stopped"

# The default severity and title of each type the driver lifecycle raises.
_DEFAULTS: Mapping[str, tuple[str, str]] = {
    DRIVER_STARTING: ("info", STARTING_TITLE),
    DRIVER_START_FAILURE: ("error", TITLE_START_FAILED),
    DRIVER_RESTART_LOOP: ("error", RESTART_LOOP_TITLE),
    DRIVER_HEALTH: ("warning", HEALTH_TITLE),
}

# -- phases of a starting card ------------------------------------------------

PULL_STARTED = "pull_started"
DOWNLOADING = "downloading"
INSTALLING = "installing"
PULL_COMPLETE = "pull_complete"
PULL_STREAM_FINISHED = "pull_stream_finished"
PULL_SKIPPED = "pull_skipped"
STARTING_CONTAINER = "starting_container"
CONTAINER_CREATED = "container_created"
CONTAINER_RUNNING = "container_running"

PULL_PHASES = frozenset({PULL_STARTED, DOWNLOADING, INSTALLING})

FAILURE_PHASES = frozenset(
    {
        "container_remove_failed",
        "docker_create_failed",
        "docker_run_failed",
        "docker_start_failed",
        "docker_create_timeout",
        "docker_run_timeout",
        "container_startup_timeout",
        "container_unhealthy",
        "image_missing",
        "pull_failed",
        "pull_failed_using_local",
        "pull_exit_error",
        "pull_timeout",
        "pull_timeout_using_local",
        "pull_timed_out",
        "pull_spawn_failed",
        "pull_oserror",
        "pull_oserror_using_local",
        "pull_unexpected",
        "macos_bridge_failed",
        "docker_network_attach_failed",
        "host_env_file_missing",
        "docker_error",
        "restart_too_soon",
        # The worker's own.
        "container_start_failed",
        "worker_ready_timeout",
        "worker_startup_exited",
    }
)
DEFAULT_FAILURE_PHASE = "docker_error"

# Bands of overall_progress_percent: (low, high) of each stage.
_DOWNLOAD_BAND = (0, 40)
_INSTALL_BAND = (40, 70)
_CONTAINER_BAND = (70, 80)
_WORKER_BAND = (80, 100)
# The share of the whole pull (download plus install) in progress_percent.
_PULL_SPAN = _INSTALL_BAND[1] - _DOWNLOAD_BAND[0]

_CONTAINER_STAGE = {
    STARTING_CONTAINER: 33,
    CONTAINER_CREATED: 66,
    CONTAINER_RUNNING: 100,
}
_PULL_DONE = frozenset({PULL_COMPLETE, PULL_STREAM_FINISHED, PULL_SKIPPED})
_WORKER_STAGE = {
    "booting": 10,
    "connecting_mqtt": 25,
    "loading_models": 40,
    "subscribed": 65,
    "warming_up": 75,
    "ready": 100,
}

# Plain-language failure texts, by the kind of phase.
_PULL_TEXT = (
    "The driver software could not be downloaded to this device. Check the "
    "device's internet connection and the driver image name; the edge core "
    "tries again on its next pass."
)
_RUN_TEXT = (
    "Docker could not create or start the driver container. The technical "
    "detail below says why; the edge core tries again on its next pass."
)
_EXIT_TEXT = (
    "The driver stopped right after it started. Check that the robot's "
    "hardware is connected and powered, then look at the driver log."
)
_TIMEOUT_TEXT = (
    "The driver did not finish starting in time. Check that the robot's "
    "hardware is connected, then look at the driver log."
)
_REMOVE_TEXT = (
    "An old driver container could not be removed, so the new one could not "
    "start. The edge core tries again on its next pass."
)
_TOO_SOON_TEXT = (
    "The driver was restarted too soon after its last run; it will be started "
    "again shortly."
)
_GENERIC_TEXT = (
    "Docker reported an error while starting the driver. The technical detail "
    "below says why; the edge core tries again on its next pass."
)
_FAILURE_TEXTS: Mapping[str, str] = {
    "docker_start_failed": _EXIT_TEXT,
    "container_startup_timeout": _TIMEOUT_TEXT,
    "container_unhealthy": _TIMEOUT_TEXT,
    "worker_ready_timeout": _TIMEOUT_TEXT,
    "worker_startup_exited": _EXIT_TEXT,
    "container_remove_failed": _REMOVE_TEXT,
    "restart_too_soon": _TOO_SOON_TEXT,
    "docker_error": _GENERIC_TEXT,
}


# -- text, time and phases ------------------------------------------------------


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 3] + "..."


def safe_text(text: str, redact: Redact = redact_secrets) -> str:
    """``text`` with secrets masked, on one line, at most 500 characters.

    Redaction comes first so that clipping cannot cut a secret in two and
    leave a piece the patterns no longer recognise.
    """
    return clip(redact(text))


def iso_utc(epoch: float) -> str:
    """ISO-8601 UTC with an explicit ``+00:00`` offset."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def failure_phase(phase: str | None) -> str:
    """``phase`` when it is a failure phase of 1.8, else ``docker_error``."""
    if phase in FAILURE_PHASES:
        return phase
    return DEFAULT_FAILURE_PHASE


def default_severity(alert_type: str) -> str:
    """The severity of 1.8 for ``alert_type`` (``warning`` when unknown)."""
    return _DEFAULTS.get(alert_type, ("warning", ""))[0]


def default_title(alert_type: str) -> str:
    """The title of 1.8 for ``alert_type`` (the type itself when unknown)."""
    return _DEFAULTS.get(alert_type, ("", alert_type))[1] or alert_type


# -- the create payload (R10) -------------------------------------------------


def create_payload(
    *,
    alert_type: str,
    name: str,
    description: str,
    severity: str,
    twin_uuid: str,
    environment_uuid: str | None,
    workspace_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of ``POST /api/v1/alerts`` (protocol.md 1.8, first table).

    ``environment_uuid`` is left out when null, ``workspace_uuid`` unless a
    workspace is configured, ``metadata`` when there is none; ``force`` is
    sent only for ``driver_starting``, whose cards must never be deduped
    onto an older attempt.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    payload: dict[str, Any] = {
        "name": name,
        "description": description,
        "alert_type": alert_type,
        "severity": severity,
        "source_type": SOURCE_TYPE,
        "category": CATEGORY,
        "twin_uuid": twin_uuid,
    }
    if environment_uuid:
        payload["environment_uuid"] = environment_uuid
    if workspace_id:
        payload["workspace_uuid"] = workspace_id
    if metadata:
        payload["metadata"] = dict(metadata)
    if alert_type == DRIVER_STARTING:
        payload["force"] = True
    return payload


# -- driver_starting ----------------------------------------------------------


def starting_title(service_name: str | None) -> str:
    """``Driver starting``, or ``Driver starting (<service>)``."""
    return f"{STARTING_TITLE} ({service_name})" if service_name else STARTING_TITLE


def starting_metadata(
    *,
    image: str,
    container_name: str,
    service_name: str | None,
    started_at: float,
    phase: str = PULL_STARTED,
) -> dict[str, Any]:
    """The metadata a ``driver_starting`` card is created with."""
    metadata: dict[str, Any] = {
        "phase": phase,
        "image": image,
        "container_name": container_name,
        "service_name": service_name,
        "started_at": started_at,
        "overall_progress_percent": 0,
        "stage_progress_percent": 0,
    }
    metadata.update(derived_percentages(metadata))
    return metadata


def _band(band: tuple[int, int], stage: float) -> int:
    low, high = band
    return round(low + (high - low) * stage / 100)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def derived_percentages(metadata: Mapping[str, Any]) -> dict[str, int]:
    """``overall_progress_percent`` and ``stage_progress_percent`` for the
    phase in ``metadata`` (bands of protocol.md 1.8).

    The pull's ``progress_percent`` covers download and install together,
    so it maps onto the first 70 points of the overall bar. A failed card
    and a phase without a known stage keep the values they have.
    """
    phase = metadata.get("phase")
    if metadata.get("failed"):
        return {}
    if phase == PULL_STARTED:
        return {"overall_progress_percent": 0, "stage_progress_percent": 0}
    if phase in (DOWNLOADING, INSTALLING):
        pull = _clamp(float(metadata.get("progress_percent") or 0), 0, 99)
        overall = pull * _PULL_SPAN / 100
        low, high = _DOWNLOAD_BAND if phase == DOWNLOADING else _INSTALL_BAND
        overall = _clamp(overall, low, high)
        stage = (overall - low) * 100 / (high - low)
        return {
            "overall_progress_percent": round(overall),
            "stage_progress_percent": min(99, round(stage)),
        }
    if phase in _PULL_DONE:
        return {
            "overall_progress_percent": _INSTALL_BAND[1],
            "stage_progress_percent": 100,
        }
    if phase in _CONTAINER_STAGE:
        stage = _CONTAINER_STAGE[phase]
        return {
            "overall_progress_percent": _band(_CONTAINER_BAND, stage),
            "stage_progress_percent": stage,
        }
    if phase in _WORKER_STAGE:
        stage = _WORKER_STAGE[phase]
        overall = _band(_WORKER_BAND, stage)
        # 100 belongs to ``ready`` alone.
        if phase != "ready":
            overall = min(99, overall)
        return {"overall_progress_percent": overall, "stage_progress_percent": stage}
    return {}


def failure_description(phase: str) -> str:
    """The plain-language text a failed card shows, chosen by its phase."""
    if phase in _FAILURE_TEXTS:
        return _FAILURE_TEXTS[phase]
    if phase == "image_missing" or phase.startswith("pull_"):
        return _PULL_TEXT
    return _RUN_TEXT


def failure_patch(
    phase: str | None,
    detail: str,
    *,
    failed_at: float,
    redact: Redact = redact_secrets,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The top-level fields and the metadata patch of a failed card.

    Returns ``(fields, metadata_patch)``: ``fields`` holds ``description``
    and ``severity: critical``; the patch holds the failure ``phase``
    (anything unknown becomes ``docker_error``), ``failed``, ``failed_at``
    (epoch seconds) and the redacted ``technical_detail``.
    """
    chosen = failure_phase(phase)
    fields = {"description": failure_description(chosen), "severity": "critical"}
    patch: dict[str, Any] = {
        "phase": chosen,
        "failed": True,
        "failed_at": failed_at,
        "technical_detail": safe_text(detail or chosen, redact),
    }
    return fields, patch


# -- driver_start_failure, driver_restart_loop, driver_health -----------------


def start_failure_description(title: str, reason: str | None) -> str:
    """The text of a ``driver_start_failure`` card: the reason when known."""
    if reason:
        return reason
    return f"{title}. The edge core tries again on its next pass."


def restart_loop_description(
    *,
    container_name: str | None,
    restarts: int | None,
    window: float | None,
    troubleshooting_url: str,
) -> str:
    """Why the driver was stopped, and where to read how to fix it."""
    what = f"The driver container {container_name}" if container_name else "A driver"
    if restarts is not None and window is not None:
        how = f"restarted {restarts} times within {window:g} s"
    else:
        how = "kept restarting"
    return (
        f"{what} {how} and was stopped to protect the device. A driver exits "
        f"like this when it cannot reach its hardware: check the connections "
        f"and power, then see {troubleshooting_url} for troubleshooting."
    )


def health_description(container_name: str | None, state: str | None) -> str:
    """The text of a ``driver_health`` card."""
    what = f"The driver container {container_name}" if container_name else "A driver"
    if state == "removed":
        return f"{what} was removed while it was running."
    suffix = f" (it is {state})" if state else ""
    return f"{what} went down while it was running{suffix}."


# -- edge_core_restart --------------------------------------------------------

CONCURRENT_RESTART_ERROR = "another edge-core restart was already in progress"


def restart_in_progress(existing: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Metadata of a restart that has begun."""
    return {**existing, "phase": "in_progress", "in_progress_at": iso_utc(now)}


def restart_completed(existing: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Metadata of a restart that finished."""
    return {**existing, "phase": "completed", "completed_at": iso_utc(now)}


def restart_failed(
    existing: Mapping[str, Any],
    error: str,
    now: float,
    *,
    redact: Redact = redact_secrets,
) -> dict[str, Any]:
    """Metadata of a restart that raised ``error`` (at most 500 characters)."""
    return {
        **existing,
        "phase": "failed",
        "error": safe_text(error, redact),
        "failed_at": iso_utc(now),
    }


def restart_concurrent(existing: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Metadata of a restart refused because another one was running."""
    return {
        **existing,
        "phase": "failed",
        "reason": "concurrent_restart",
        "error": CONCURRENT_RESTART_ERROR,
        "failed_at": iso_utc(now),
    }
