"""Loading credentials.json and applying its envs block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_core.config.credentials import (
    Credentials,
    apply_envs,
    load_credentials,
    read_token,
)
from edge_core.errors import ConfigError

LOGIN_FIX = 'run "sudo cyberwave edge install" to log this device in'


def _write(config: Path, document: object) -> Path:
    path = config / "credentials.json"
    path.write_text(json.dumps(document))
    return path


def test_load_reads_token_envs_and_overrides(tmp_path: Path) -> None:
    """A complete file yields the stripped token, the envs and the driver overrides."""
    path = _write(
        tmp_path,
        {
            "token": "  cw_abcdef123  ",
            "email": "a@b.c",
            "envs": {"CYBERWAVE_ENVIRONMENT": "dev", "ZENOH_MODE": "peer"},
            "driver_overrides": {"t1": "cyberwaveos/camera-driver:local"},
        },
    )

    creds = load_credentials(tmp_path)

    assert creds == Credentials(
        path=path,
        token="cw_abcdef123",
        envs={"CYBERWAVE_ENVIRONMENT": "dev", "ZENOH_MODE": "peer"},
        driver_overrides={"t1": "cyberwaveos/camera-driver:local"},
    )


def test_optional_blocks_default_to_empty(tmp_path: Path) -> None:
    """A file with only a token has empty envs and overrides (null counts as absent)."""
    _write(tmp_path, {"token": "cw_abcdef123", "envs": None})

    creds = load_credentials(tmp_path)

    assert creds.envs == {}
    assert creds.driver_overrides == {}


def test_repr_never_shows_token(tmp_path: Path) -> None:
    """The token does not appear in the repr, so logging the object is safe."""
    _write(tmp_path, {"token": "cw_verysecret99"})
    assert "cw_verysecret99" not in repr(load_credentials(tmp_path))


def test_loading_never_modifies_file(tmp_path: Path) -> None:
    """Reading leaves the file's bytes and modification time unchanged."""
    path = _write(tmp_path, {"token": " cw_abcdef123 ", "extra": [1, 2]})
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    load_credentials(tmp_path)

    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_missing_file_is_one_line_with_fix(tmp_path: Path) -> None:
    """A missing file names the file and tells the operator to log the device in."""
    with pytest.raises(ConfigError) as caught:
        load_credentials(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'credentials.json'} does not exist; {LOGIN_FIX}"
    )


def test_not_json_names_file(tmp_path: Path) -> None:
    """A file that is not JSON raises a ConfigError naming it."""
    (tmp_path / "credentials.json").write_text("token=cw_x")
    with pytest.raises(ConfigError, match=r"credentials\.json is not valid JSON"):
        load_credentials(tmp_path)


def test_not_an_object(tmp_path: Path) -> None:
    """A JSON array instead of an object is refused."""
    _write(tmp_path, ["cw_abcdef123"])
    with pytest.raises(ConfigError, match="is not a JSON object"):
        load_credentials(tmp_path)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "is missing"),
        ({"token": None}, "is missing"),
        ({"token": 42}, "is not a string"),
        ({"token": "   "}, "is empty"),
    ],
)
def test_bad_token_names_field(tmp_path: Path, document: object, problem: str) -> None:
    """A missing, null, non-string or empty token names the token field and the fix."""
    path = _write(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_credentials(tmp_path)
    assert str(caught.value) == f'{path}: field "token" {problem}; {LOGIN_FIX}'
    assert caught.value.field == "token"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"token": "cw_abcdef123", "envs": ["A=b"]}, "envs"),
        ({"token": "cw_abcdef123", "envs": {"CYBERWAVE_X": 5}}, "envs.CYBERWAVE_X"),
        ({"token": "cw_abcdef123", "driver_overrides": "img"}, "driver_overrides"),
        (
            {"token": "cw_abcdef123", "driver_overrides": {"t": None}},
            "driver_overrides.t",
        ),
    ],
)
def test_bad_string_maps_name_field(
    tmp_path: Path, document: object, field: str
) -> None:
    """envs and driver_overrides must be objects of strings; the error names the exact
    field."""
    _write(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_credentials(tmp_path)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_read_token_picks_up_rotation(tmp_path: Path) -> None:
    """read_token reads the file again, so a rotated token is returned."""
    path = _write(tmp_path, {"token": "cw_first00001"})
    assert read_token(path) == "cw_first00001"

    _write(tmp_path, {"token": "cw_second0002"})
    assert read_token(path) == "cw_second0002"


def test_read_token_reports_empty_token(tmp_path: Path) -> None:
    """read_token raises the same ConfigError as loading when the token is gone."""
    path = _write(tmp_path, {"token": ""})
    with pytest.raises(ConfigError, match='field "token" is empty'):
        read_token(path)


def test_apply_envs_never_overrides_process() -> None:
    """Keys are copied only where the process has no non-empty value; the copied keys
    are returned."""
    environ = {"CYBERWAVE_ENVIRONMENT": "staging", "CYBERWAVE_EDGE_LOG_LEVEL": "  "}
    envs = {
        "CYBERWAVE_ENVIRONMENT": "dev",
        "CYBERWAVE_EDGE_LOG_LEVEL": "debug",
        "ZENOH_MODE": "client",
        "CYBERWAVE_EMPTY": "",
    }

    applied = apply_envs(envs, environ)

    assert applied == ["CYBERWAVE_EDGE_LOG_LEVEL", "ZENOH_MODE"]
    assert environ == {
        "CYBERWAVE_ENVIRONMENT": "staging",
        "CYBERWAVE_EDGE_LOG_LEVEL": "debug",
        "ZENOH_MODE": "client",
    }
