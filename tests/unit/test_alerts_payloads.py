"""The alert bodies of protocol.md 1.8: fields, titles, percentages, patches."""

from __future__ import annotations

from datetime import datetime

import pytest

from edge_core.alerts import payloads
from edge_core.model.failures import TITLE_IMAGE_NOT_AVAILABLE

TWIN = "7f3c2a10-5e4b-4d8a-9c61-0b2e7d9f4a13"
ENV = "5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90"
TOKEN = "cw_live_7e0c2f9b41d84a"
SIGNED = "https://storage.example/w.bin?X-Goog-Signature=abcdef0123&X-Goog-Expires=60"
BASE_FIELDS = {
    "name",
    "description",
    "alert_type",
    "severity",
    "source_type",
    "category",
    "twin_uuid",
}


def create(alert_type: str, **options: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "alert_type": alert_type,
        "name": "title",
        "description": "text",
        "severity": payloads.default_severity(alert_type),
        "twin_uuid": TWIN,
        "environment_uuid": ENV,
    }
    fields.update(options)
    return payloads.create_payload(**fields)  # type: ignore[arg-type]


def test_driver_starting_is_forced_and_carries_every_field() -> None:
    """A driver_starting create has force=true and the full field set."""
    body = create("driver_starting", workspace_id="ws-1", metadata={"phase": "x"})
    assert set(body) == BASE_FIELDS | {
        "environment_uuid",
        "workspace_uuid",
        "metadata",
        "force",
    }
    assert body["force"] is True
    assert (body["source_type"], body["category"]) == ("edge", "technical")
    assert body["workspace_uuid"] == "ws-1"


@pytest.mark.parametrize(
    "alert_type", ["driver_start_failure", "driver_restart_loop", "driver_health"]
)
def test_other_types_are_deduped_and_leave_out_what_is_absent(alert_type: str) -> None:
    """No force, and no environment, workspace or metadata when there is none."""
    body = create(alert_type, environment_uuid=None, metadata={})
    assert set(body) == BASE_FIELDS
    assert "force" not in body


def test_default_severities_and_titles_follow_the_table() -> None:
    """Each driver type has the severity and title of 1.8."""
    expected = {
        "driver_starting": ("info", "Driver starting"),
        "driver_start_failure": ("error", "Driver failed to start"),
        "driver_restart_loop": ("error", "Driver restart loop detected"),
        "driver_health": ("warning", "Driver container stopped"),
    }
    for alert_type, (severity, title) in expected.items():
        assert payloads.default_severity(alert_type) == severity
        assert payloads.default_title(alert_type) == title


def test_unknown_severity_is_refused() -> None:
    """A severity outside the four of 1.8 is a programming error."""
    with pytest.raises(ValueError, match="severity"):
        create("driver_health", severity="fatal")


def test_starting_title_names_the_service() -> None:
    """Multi-service drivers get "Driver starting (<service>)"."""
    assert payloads.starting_title(None) == "Driver starting"
    assert payloads.starting_title("slam") == "Driver starting (slam)"


def test_starting_metadata_at_creation() -> None:
    """The baseline metadata has exactly the keys of 1.8."""
    metadata = payloads.starting_metadata(
        image="reg/img:1",
        container_name="cyberwave-driver-7f3c2a10",
        service_name=None,
        started_at=1700000000.5,
    )
    assert metadata == {
        "phase": "pull_started",
        "image": "reg/img:1",
        "container_name": "cyberwave-driver-7f3c2a10",
        "service_name": None,
        "started_at": 1700000000.5,
        "overall_progress_percent": 0,
        "stage_progress_percent": 0,
    }


@pytest.mark.parametrize(
    ("phase", "progress", "overall", "stage"),
    [
        ("pull_started", None, 0, 0),
        ("downloading", 0, 0, 0),
        ("downloading", 50, 35, 88),
        ("downloading", 99, 40, 99),
        ("installing", 80, 56, 53),
        ("installing", 10, 40, 0),
        ("pull_complete", 100, 70, 100),
        ("pull_stream_finished", None, 70, 100),
        ("pull_skipped", None, 70, 100),
        ("starting_container", None, 73, 33),
        ("container_created", None, 77, 66),
        ("container_running", None, 80, 100),
        ("warming_up", None, 95, 75),
        ("ready", None, 100, 100),
    ],
)
def test_derived_percentages_follow_the_bands(
    phase: str, progress: int | None, overall: int, stage: int
) -> None:
    """overall_progress_percent uses the 1.8 bands; 100 only at ready."""
    derived = payloads.derived_percentages(
        {"phase": phase, "progress_percent": progress}
    )
    assert derived == {
        "overall_progress_percent": overall,
        "stage_progress_percent": stage,
    }


def test_a_failed_card_keeps_its_percentages() -> None:
    """Nothing is derived for a failed card or an unknown phase."""
    assert payloads.derived_percentages({"phase": "pull_failed", "failed": True}) == {}
    assert payloads.derived_percentages({"phase": "something_else"}) == {}


def test_failure_patch_is_critical_redacted_and_short() -> None:
    """The failure patch carries phase, failed, failed_at and a safe detail."""
    detail = f"pull of {SIGNED} with Bearer {TOKEN} failed: " + "x" * 800
    fields, patch = payloads.failure_patch("image_missing", detail, failed_at=12.5)
    assert fields["severity"] == "critical"
    assert "could not be downloaded" in fields["description"]
    assert set(patch) == {"phase", "failed", "failed_at", "technical_detail"}
    assert (patch["phase"], patch["failed"], patch["failed_at"]) == (
        "image_missing",
        True,
        12.5,
    )
    technical = patch["technical_detail"]
    assert len(technical) <= 500
    assert TOKEN not in technical
    assert "abcdef0123" not in technical
    assert "X-Goog-Signature=***" in technical


def test_failure_patch_uses_a_custom_redaction() -> None:
    """A registered secret that does not look like a token is masked too."""
    _, patch = payloads.failure_patch(
        "docker_create_failed",
        "password hunter2 refused",
        failed_at=1.0,
        redact=lambda text: text.replace("hunter2", "***"),
    )
    assert patch["technical_detail"] == "password *** refused"


def test_unknown_failure_phase_becomes_docker_error() -> None:
    """Anything outside the failure phases of 1.8 is reported as docker_error."""
    fields, patch = payloads.failure_patch("weird", "boom", failed_at=1.0)
    assert patch["phase"] == "docker_error"
    assert payloads.failure_phase(None) == "docker_error"
    assert payloads.failure_phase("pull_timeout") == "pull_timeout"
    assert "Docker reported an error" in fields["description"]


def test_failure_texts_speak_to_people_by_phase() -> None:
    """Exit, timeout, pull and create failures get different plain texts."""
    texts = {
        phase: payloads.failure_description(phase)
        for phase in (
            "docker_start_failed",
            "container_startup_timeout",
            "pull_failed",
            "docker_create_failed",
        )
    }
    assert len(set(texts.values())) == 4
    assert "hardware" in texts["docker_start_failed"]


def test_restart_loop_description_names_count_window_and_url() -> None:
    """The restart-loop text carries the troubleshooting URL and the numbers."""
    text = payloads.restart_loop_description(
        container_name="cyberwave-driver-7f3c2a10",
        restarts=5,
        window=60.0,
        troubleshooting_url="https://docs.example/drivers",
    )
    assert "restarted 5 times within 60 s" in text
    assert "https://docs.example/drivers" in text
    assert "cyberwave-driver-7f3c2a10" in text


def test_start_failure_text_is_the_reason_when_known() -> None:
    """A driver_start_failure says why; without a reason, its title."""
    assert payloads.start_failure_description("T", "twin x: no image") == (
        "twin x: no image"
    )
    assert payloads.start_failure_description(
        TITLE_IMAGE_NOT_AVAILABLE, None
    ).startswith(TITLE_IMAGE_NOT_AVAILABLE)


def _is_utc_iso(value: object) -> bool:
    assert isinstance(value, str)
    return (
        value.endswith("+00:00")
        and datetime.fromisoformat(value).utcoffset() is not None
    )


def test_restart_patches_keep_existing_metadata_and_use_utc_iso() -> None:
    """in_progress, completed and failed merge onto the card's metadata."""
    existing = {"phase": "requested", "request_id": "r1"}
    started = payloads.restart_in_progress(existing, 1700000000.0)
    assert started["request_id"] == "r1"
    assert started["phase"] == "in_progress"
    assert started["in_progress_at"] == "2023-11-14T22:13:20+00:00"
    done = payloads.restart_completed(started, 1700000060.0)
    assert done["phase"] == "completed"
    assert _is_utc_iso(done["completed_at"])
    assert done["in_progress_at"] == started["in_progress_at"]
    failed = payloads.restart_failed(started, f"{TOKEN} " + "e" * 900, 1700000001.0)
    assert failed["phase"] == "failed"
    assert len(failed["error"]) <= 500
    assert TOKEN not in failed["error"]
    assert _is_utc_iso(failed["failed_at"])


def test_concurrent_restart_patch() -> None:
    """A refused second restart says concurrent_restart with the fixed error."""
    patch = payloads.restart_concurrent({"request_id": "r2"}, 0.0)
    assert patch == {
        "request_id": "r2",
        "phase": "failed",
        "reason": "concurrent_restart",
        "error": "another edge-core restart was already in progress",
        "failed_at": "1970-01-01T00:00:00+00:00",
    }
