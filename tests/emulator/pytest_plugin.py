"""Pytest fixtures for the backend emulator.

Loaded everywhere through ``pytest_plugins`` in ``tests/conftest.py``.
``emulator`` is a fresh in-process backend per test on its own free port,
with a unique token, so tests never share state and run in parallel. It
does not start a broker: call ``emulator.use_broker(broker.host,
broker.port, ...)`` with the broker fixture when a test needs commands.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulator.server import Emulator, read_example_environment
from tests.emulator.state import substitute_fingerprint

__all__ = ["emulator", "load_example_environment"]


def load_example_environment(fingerprint: str) -> dict[str, Any]:
    """The example environment (twins, assets) with ``<FP>`` set to ``fingerprint``."""
    data: dict[str, Any] = substitute_fingerprint(
        read_example_environment(), fingerprint
    )
    return data


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running, empty emulated backend that accepts ``emulator.token``."""
    backend = Emulator(tokens=[f"cw_test_{uuid.uuid4().hex}"])
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()
