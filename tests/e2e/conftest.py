"""The commands under test: the installed console script and the binary."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def installed_command() -> list[str]:
    script = Path(sys.executable).parent / "cyberwave-edge-core"
    if not script.exists():
        found = shutil.which("cyberwave-edge-core")
        if found is None:
            pytest.fail("cyberwave-edge-core is not installed; run scripts/setup-host")
        script = Path(found)
    return [str(script)]


def frozen_binary() -> list[str]:
    binary = Path(
        os.environ.get("CW_EDGE_BINARY", ROOT / "dist" / "cyberwave-edge-core")
    )
    if not binary.is_file():
        pytest.fail(f"{binary} does not exist; build it with scripts/build-binary")
    return [str(binary)]


@pytest.fixture(params=["installed", "frozen"])
def edge_command(request: pytest.FixtureRequest) -> list[str]:
    """The edge core as an operator runs it: console script or frozen binary."""
    return installed_command() if request.param == "installed" else frozen_binary()
