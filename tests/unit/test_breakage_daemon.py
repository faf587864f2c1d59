"""The daemon's state file when it cannot be written.

``run/edge-core-state.json`` is rewritten whenever the daemon's phase
changes and tried again every cycle. On a full or broken disk that must be
one warning (and one line when it works again), not a warning per cycle.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge_core.config.credentials import Credentials
from edge_core.config.settings import load_settings
from edge_core.daemon import Daemon


def make_daemon(config_dir: Path) -> Daemon:
    settings = load_settings(
        {
            "CYBERWAVE_BASE_URL": "http://127.0.0.1:9",
            "CYBERWAVE_MQTT_HOST": "127.0.0.1",
            "CYBERWAVE_MQTT_PORT": "9",
        },
        envs={},
        config_dir=config_dir,
    )
    credentials = Credentials(path=config_dir / "credentials.json", token="cw_x")
    return Daemon(settings=settings, credentials=credentials, fingerprint="fp-1")


def test_unwritable_state_file_is_reported_once_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Failing state writes give one warning however often they are tried,
    and one info line once the file can be written again."""
    blocker = tmp_path / "run" / "edge-core-state.json"
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("a directory where the state file belongs")
    daemon = make_daemon(tmp_path)
    caplog.set_level(logging.INFO, logger="edge_core.state")

    for phase in ("starting", "waiting_for_backend", "running", "starting"):
        daemon._phase = phase
        daemon._write_state()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "edge-core-state.json" in warnings[0].getMessage()

    (blocker / "keep").unlink()
    blocker.rmdir()
    daemon._phase = "running"
    daemon._write_state()

    state = json.loads((tmp_path / "run" / "edge-core-state.json").read_text())
    assert state["phase"] == "running"
    assert any("written again" in r.getMessage() for r in caplog.records)


def test_a_file_where_run_belongs_is_moved_aside(tmp_path: Path) -> None:
    """A file named ``run`` is renamed, its bytes kept, and the directory made
    so the daemon's state can be written."""
    (tmp_path / "run").write_text("someone's notes")
    daemon = make_daemon(tmp_path)

    daemon._write_state()

    state = json.loads((tmp_path / "run" / "edge-core-state.json").read_text())
    assert state["phase"] == "starting"
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.moved-aside-")]
    assert aside.read_text() == "someone's notes"
