"""The typed container view over the engine's inspect document."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from edge_core.model.spec import (
    LABEL_FINGERPRINT,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_TWIN,
)
from edge_core.runtime.container import ContainerState, ContainerView, parse_timestamp


def inspect_document(**state: Any) -> dict[str, Any]:
    return {
        "Id": "abc123",
        "Name": "/cyberwave-driver-1a2b3c4d",
        "Image": "sha256:feed",
        "RestartCount": 2,
        "State": {
            "Status": "running",
            "ExitCode": 0,
            "StartedAt": "2024-05-06T07:08:09.123456789Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            **state,
        },
        "Config": {
            "Image": "cyberwaveos/so101-driver:dev",
            "Env": ["A=1", "B=x=y", "EMPTY="],
            "Labels": {
                LABEL_TWIN: "twin-1",
                LABEL_SERVICE: "arm",
                LABEL_SPEC_HASH: "f00d",
                LABEL_FINGERPRINT: "fp-1",
            },
            "Tty": False,
        },
        "HostConfig": {"Privileged": True, "RestartPolicy": {"Name": "unless-stopped"}},
    }


def test_view_reads_identity_state_and_labels() -> None:
    """The view exposes the engine's fields under typed names."""
    view = ContainerView.from_inspect(inspect_document())
    assert view.id == "abc123"
    assert view.name == "cyberwave-driver-1a2b3c4d"
    assert view.image == "cyberwaveos/so101-driver:dev"
    assert view.image_id == "sha256:feed"
    assert view.state is ContainerState.RUNNING
    assert view.running
    assert view.exit_code == 0
    assert view.restart_count == 2
    assert view.privileged
    assert view.restart_policy == "unless-stopped"
    assert (view.twin_uuid, view.service, view.spec_hash, view.fingerprint) == (
        "twin-1",
        "arm",
        "f00d",
        "fp-1",
    )


def test_env_is_split_at_the_first_equals_sign() -> None:
    """Env entries keep everything after the first '=' as the value."""
    view = ContainerView.from_inspect(inspect_document())
    assert view.env == {"A": "1", "B": "x=y", "EMPTY": ""}


def test_timestamps_parse_nanoseconds_and_never() -> None:
    """Nanosecond timestamps are parsed; the zero time means None."""
    view = ContainerView.from_inspect(inspect_document())
    assert view.started_at == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    assert view.finished_at is None


def test_timestamp_with_offset_is_converted_to_utc() -> None:
    """A timestamp with a zone offset is returned in UTC."""
    parsed = parse_timestamp("2024-05-06T09:08:09+02:00")
    assert parsed == datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    assert parse_timestamp("yesterday") is None


def test_unknown_state_and_missing_sections_do_not_crash() -> None:
    """An odd state is UNKNOWN and missing sections give empty values."""
    view = ContainerView.from_inspect({"Id": "x", "State": {"Status": "hibernating"}})
    assert view.state is ContainerState.UNKNOWN
    assert view.labels == {}
    assert view.env == {}
    assert view.health is None
    assert view.fingerprint is None


def test_health_status_is_read() -> None:
    """The health status of a container with a healthcheck is exposed."""
    view = ContainerView.from_inspect(inspect_document(Health={"Status": "healthy"}))
    assert view.health == "healthy"


def test_belongs_to_compares_the_fingerprint_label() -> None:
    """Only the exact fingerprint owns the container; empty never does."""
    view = ContainerView.from_inspect(inspect_document())
    assert view.belongs_to("fp-1")
    assert not view.belongs_to("fp-2")
    assert not view.belongs_to("")
