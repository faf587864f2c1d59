"""Garbage in the log rotation settings becomes a warning, not dead drivers.

The engine refuses to create a container whose json-file log options it
cannot parse, so a typo in ``CYBERWAVE_DOCKER_LOG_MAX_SIZE`` or
``..._MAX_FILE`` would fail every driver. Like every other tuning
variable (7b item 20), a bad value gives one warning naming the variable,
the value and the default, and the default is used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_core.config.settings import load_settings

SIZE = "CYBERWAVE_DOCKER_LOG_MAX_SIZE"
FILES = "CYBERWAVE_DOCKER_LOG_MAX_FILE"


@pytest.mark.parametrize("value", ["banana", "-1", "10 megs", "1e3", "m"])
def test_bad_log_size_warns_and_uses_the_default(value: str) -> None:
    """A max-size Docker cannot parse is replaced by 10m with one warning."""
    settings = load_settings({SIZE: value}, envs={}, config_dir=Path("/nonexistent"))

    assert settings.docker_log_max_size == "10m"
    assert settings.warnings == (
        f'{SIZE}="{value}" is not a log size (e.g. 10m, 1g, or "off"); using 10m',
    )


@pytest.mark.parametrize("value", ["10m", "1.5g", "512k", "100", "20MiB", "off"])
def test_good_log_sizes_are_kept(value: str) -> None:
    """Sizes the engine accepts, and "off", are used as given."""
    settings = load_settings({SIZE: value}, envs={}, config_dir=Path("/nonexistent"))

    assert settings.docker_log_max_size == value
    assert settings.warnings == ()


@pytest.mark.parametrize("value", ["0", "-2", "three", "2.5"])
def test_bad_log_file_count_warns_and_uses_the_default(value: str) -> None:
    """A max-file that is not a count of at least 1 is replaced by 3."""
    settings = load_settings({FILES: value}, envs={}, config_dir=Path("/nonexistent"))

    assert settings.docker_log_max_file == "3"
    assert settings.warnings == (
        f'{FILES}="{value}" is not a whole number of at least 1; using 3',
    )
