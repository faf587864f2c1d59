"""``status`` rows for configuration an operator broke while the daemon runs.

Each test writes a config dir and the daemon's state file as a running
daemon would have left them, then gathers the report offline and checks
the row a person reads: what is wrong, and the one step that fixes it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from edge_core.errors import AuthError, BackendUnavailable
from edge_core.presence import BackendStatus
from edge_core.report import gather
from tests.unit.test_status_state import (
    OFFLINE_SINCE,
    check,
    environ,
    with_fields,
    write_state,
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A logged-in config dir with a fingerprint no container carries."""
    directory = tmp_path / "cyberwave"
    directory.mkdir(mode=0o700)
    (directory / "credentials.json").write_text(json.dumps({"token": "cw_x"}))
    (directory / "environment.json").write_text(json.dumps({"uuid": str(uuid.uuid4())}))
    fingerprint = {"fingerprint": f"status-test-{uuid.uuid4().hex[:12]}"}
    (directory / "fingerprint.json").write_text(json.dumps(fingerprint))
    return directory


REFUSED = (
    "GET /api/v1/environments/5b0e6a52-9d1c-4c3e-8f0a-2d7b8e4c1a90/twins was "
    "refused with HTTP 401 (Invalid token.); the API token is invalid or lacks "
    "access: log in again with 'cyberwave edge install'"
)


def test_a_token_the_backend_refuses_says_to_fix_the_token_not_the_network(
    config_dir: Path,
) -> None:
    write_state(
        config_dir,
        with_fields(
            offline_since=OFFLINE_SINCE,
            backend_error=REFUSED,
            backend_token_refused=True,
        ),
    )

    backend = check(gather(environ(config_dir), online=False), "backend")

    assert backend.ok is False
    assert backend.detail.startswith("refusing the token since 2024-05-06 14:03 UTC")
    assert backend.fix is not None
    assert "credentials.json" in backend.fix
    assert "cyberwave edge install" in backend.fix
    assert "network" not in backend.fix


def test_an_unreachable_backend_still_points_at_the_network(
    config_dir: Path,
) -> None:
    write_state(
        config_dir,
        with_fields(
            offline_since=OFFLINE_SINCE,
            backend_error="GET /x answered HTTP 503 (busy); will retry",
        ),
    )

    backend = check(gather(environ(config_dir), online=False), "backend")

    assert backend.detail.startswith("unreachable since")
    assert backend.fix is not None and "network" in backend.fix


def test_a_damaged_saved_state_is_not_called_missing(config_dir: Path) -> None:
    (config_dir / "desired-state.json").write_text('{"environment_uuid": "x", "tw')
    write_state(config_dir, with_fields(offline_since=OFFLINE_SINCE))

    detail = check(gather(environ(config_dir), online=False), "backend").detail

    assert "desired-state.json is unusable" in detail
    assert "no desired-state.json yet" not in detail


def test_the_daemon_notes_whether_the_backend_refused_the_token() -> None:
    """The flag ``status`` reads follows the last failure, and an answer
    clears it."""
    backend = BackendStatus()

    backend.failed(AuthError("refused with HTTP 401"))
    assert backend.token_refused is True

    backend.failed(BackendUnavailable("HTTP 503"))
    assert backend.token_refused is False

    backend.failed(AuthError("refused with HTTP 403"))
    backend.answered()
    assert backend.token_refused is False
