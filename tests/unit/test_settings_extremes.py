"""Numbers far outside any sensible range become a warning and the default.

A value such as ``1e300`` parses as a finite float, but every wait on it
(``Event.wait``, ``time.sleep``, a socket timeout) raises
``OverflowError``, which stopped the whole edge core at boot. Every
number variable without an upper bound of its own is capped at
``LARGEST``; one without a lower bound also refuses ``-LARGEST``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge_core.config.settings import LARGEST, VARIABLES, Kind, Var, load_settings

NUMBERS = [var for var in VARIABLES if var.kind in (Kind.INT, Kind.FLOAT)]
DEFAULTS = load_settings({}, envs={}, config_dir=Path("/x"))


def _huge(var: Var) -> str:
    return "1e300" if var.kind is Kind.FLOAT else "9" * 30


@pytest.mark.parametrize("var", NUMBERS, ids=[var.name for var in NUMBERS])
def test_a_huge_number_warns_once_and_keeps_the_default(var: Var) -> None:
    text = _huge(var)
    settings = load_settings({var.name: text}, envs={}, config_dir=Path("/x"))

    assert getattr(settings, var.attr) == getattr(DEFAULTS, var.attr)
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith(f'{var.name}="{text}" is ')


@pytest.mark.parametrize("var", NUMBERS, ids=[var.name for var in NUMBERS])
def test_a_hugely_negative_number_warns_once_and_keeps_the_default(var: Var) -> None:
    text = "-" + _huge(var)
    settings = load_settings({var.name: text}, envs={}, config_dir=Path("/x"))

    assert getattr(settings, var.attr) == getattr(DEFAULTS, var.attr)
    assert len(settings.warnings) == 1


def test_the_largest_accepted_value_can_be_waited_on() -> None:
    """Every accepted number fits the platform's timer."""
    assert LARGEST < threading.TIMEOUT_MAX
    assert threading.Lock().acquire(timeout=LARGEST)
    settings = load_settings(
        {"CYBERWAVE_RECONCILE_INTERVAL_SECONDS": str(LARGEST)},
        envs={},
        config_dir=Path("/x"),
    )
    assert settings.reconcile_interval == LARGEST
    assert settings.warnings == ()


def test_the_warning_names_the_limit() -> None:
    settings = load_settings(
        {"CYBERWAVE_SHUTDOWN_TIMEOUT_SECONDS": "1e12"}, envs={}, config_dir=Path("/x")
    )
    assert settings.warnings == (
        'CYBERWAVE_SHUTDOWN_TIMEOUT_SECONDS="1e12" is too large (at most '
        "1000000000); using 10",
    )


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_value_means_not_set(text: str) -> None:
    settings = load_settings(
        {"CYBERWAVE_REST_TIMEOUT_SECONDS": text}, envs={}, config_dir=Path("/x")
    )
    assert settings.rest_timeout == 10.0
    assert settings.warnings == ()
