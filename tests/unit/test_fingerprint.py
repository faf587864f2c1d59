"""The edge fingerprint: test vectors, host identity and persistence."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import pytest

from edge_core.config.fingerprint import (
    compute_fingerprint,
    host_identity,
    resolve_fingerprint,
)
from edge_core.errors import ConfigError

IDENTITY = ("Robot-Lab.local", "a4:83:e7:12:34:56", "Linux-aarch64")
IDENTITY_FP = "robot-lab-local-a859819bdb99"


def _identity() -> tuple[str, str, str]:
    return IDENTITY


@pytest.mark.parametrize(
    ("hostname", "mac", "plat", "expected"),
    [
        ("Robot-Lab.local", "a4:83:e7:12:34:56", "Linux-aarch64", IDENTITY_FP),
        (
            "My Jetson Orin Nano",
            "00:04:4b:aa:bb:cc",
            "Linux-aarch64",
            "my-jetson-orin-7df280a6eda8",
        ),
        ("", "02:42:ac:11:00:02", "Linux-x86_64", "-6f1028a83796"),
    ],
)
def test_protocol_vectors(hostname: str, mac: str, plat: str, expected: str) -> None:
    """compute_fingerprint reproduces every test vector of protocol.md 7c."""
    assert compute_fingerprint(hostname, mac, plat) == expected


def test_host_identity_shape() -> None:
    """The host identity is a hostname, a colon-separated lowercase MAC and System-
    machine."""
    hostname, mac, plat = host_identity()

    assert hostname == hostname.strip()
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
    assert plat == f"{platform.system()}-{platform.machine()}"


def test_computed_fingerprint_is_saved(tmp_path: Path) -> None:
    """Without a file or override the fingerprint is computed and saved with mode
    0644."""
    fp = resolve_fingerprint(tmp_path, {}, persist=True, identity=_identity)

    path = tmp_path / "fingerprint.json"
    assert fp == IDENTITY_FP
    assert path.read_text() == '{\n  "fingerprint": "robot-lab-local-a859819bdb99"\n}\n'
    assert path.stat().st_mode & 0o777 == 0o644


def test_read_only_resolution_never_writes(tmp_path: Path) -> None:
    """With persist=False the fingerprint is computed but no file is written."""
    fp = resolve_fingerprint(tmp_path, {}, persist=False, identity=_identity)

    assert fp == IDENTITY_FP
    assert list(tmp_path.iterdir()) == []


def test_saved_fingerprint_wins(tmp_path: Path) -> None:
    """A saved fingerprint (stripped) beats the override and the computed value."""
    (tmp_path / "fingerprint.json").write_text('{"fingerprint": "  saved-abc  "}')
    environ = {"CYBERWAVE_EDGE_UUID": "override-1"}

    assert resolve_fingerprint(tmp_path, environ, persist=True) == "saved-abc"


def test_override_is_used_and_not_saved(tmp_path: Path) -> None:
    """CYBERWAVE_EDGE_UUID is used when no file exists, and it is not written."""
    environ = {"CYBERWAVE_EDGE_UUID": " override-1 "}

    assert resolve_fingerprint(tmp_path, environ, persist=True) == "override-1"
    assert not (tmp_path / "fingerprint.json").exists()


def test_empty_saved_value_is_replaced(tmp_path: Path) -> None:
    """A file holding an empty fingerprint counts as absent and is rewritten."""
    path = tmp_path / "fingerprint.json"
    path.write_text('{"fingerprint": ""}')

    fp = resolve_fingerprint(tmp_path, {}, persist=True, identity=_identity)

    assert fp == IDENTITY_FP
    assert json.loads(path.read_text()) == {"fingerprint": IDENTITY_FP}


@pytest.mark.parametrize(
    "content",
    ['{"fingerprint": "abc', '["abc"]', '{"fingerprint": 12}'],
)
def test_corrupt_file_is_reported_not_overwritten(tmp_path: Path, content: str) -> None:
    """A damaged fingerprint.json raises a ConfigError naming it and is left as it
    was."""
    path = tmp_path / "fingerprint.json"
    path.write_text(content)

    with pytest.raises(ConfigError) as caught:
        resolve_fingerprint(tmp_path, {}, persist=True, identity=_identity)

    assert str(caught.value).startswith(str(path))
    assert "restore it" in str(caught.value)
    assert path.read_text() == content


def test_unwritable_directory_is_a_config_error(tmp_path: Path) -> None:
    """When the fingerprint cannot be saved the error names the file."""
    missing_dir = tmp_path / "absent"
    with pytest.raises(ConfigError, match=r"fingerprint\.json cannot be written"):
        resolve_fingerprint(missing_dir, {}, persist=True, identity=_identity)
