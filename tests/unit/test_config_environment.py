"""Loading environment.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_core.config.environment import EnvironmentConfig, load_environment
from edge_core.errors import ConfigError

ENV_UUID = "0B7C1D2E-1111-4222-8333-444455556666"
TWIN_A = "5d2e0000-0000-4000-8000-00000000000a"
TWIN_B = "9A410000-0000-4000-8000-00000000000B"


def _write(config: Path, document: object) -> Path:
    path = config / "environment.json"
    path.write_text(json.dumps(document))
    return path


def test_uuids_are_normalized_to_lowercase(tmp_path: Path) -> None:
    """The environment and twin UUIDs come back in canonical lowercase form."""
    path = _write(
        tmp_path,
        {"uuid": f" {ENV_UUID} ", "name": "Floor 1", "twin_uuids": [TWIN_A, TWIN_B]},
    )

    assert load_environment(tmp_path) == EnvironmentConfig(
        path=path,
        uuid=ENV_UUID.lower(),
        twin_uuids=(TWIN_A, TWIN_B.lower()),
    )


def test_missing_twin_uuids_means_legacy(tmp_path: Path) -> None:
    """Without the twin_uuids key the twin list is None (fingerprint discovery)."""
    _write(tmp_path, {"uuid": ENV_UUID})
    assert load_environment(tmp_path).twin_uuids is None


def test_empty_twin_uuids_means_none_selected(tmp_path: Path) -> None:
    """An empty list is kept as an empty tuple, distinct from a legacy file."""
    _write(tmp_path, {"uuid": ENV_UUID, "twin_uuids": []})
    assert load_environment(tmp_path).twin_uuids == ()


def test_duplicate_twins_are_dropped_in_order(tmp_path: Path) -> None:
    """The same twin listed twice (in any case) appears once, first position kept."""
    _write(tmp_path, {"uuid": ENV_UUID, "twin_uuids": [TWIN_B, TWIN_A, TWIN_B.lower()]})
    assert load_environment(tmp_path).twin_uuids == (TWIN_B.lower(), TWIN_A)


def test_missing_file_names_file(tmp_path: Path) -> None:
    """A missing file raises a ConfigError naming it and the installer fix."""
    with pytest.raises(ConfigError) as caught:
        load_environment(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'environment.json'} does not exist; ")
    assert "select an environment" in message


def test_bad_json_names_file(tmp_path: Path) -> None:
    """A file that is not JSON raises a ConfigError naming it."""
    (tmp_path / "environment.json").write_text("{uuid: 1")
    with pytest.raises(ConfigError, match=r"environment\.json is not valid JSON"):
        load_environment(tmp_path)


@pytest.mark.parametrize(
    ("document", "field", "problem"),
    [
        ({"twin_uuids": []}, "uuid", "is missing"),
        ({"uuid": "floor-1"}, "uuid", "is not a UUID ('floor-1')"),
        ({"uuid": 7}, "uuid", "is not a UUID (7)"),
        ({"uuid": ENV_UUID, "twin_uuids": TWIN_A}, "twin_uuids", "is not a list"),
        (
            {"uuid": ENV_UUID, "twin_uuids": [TWIN_A, "x"]},
            "twin_uuids[1]",
            "is not a UUID",
        ),
        ({"uuid": ENV_UUID, "twin_uuids": [None]}, "twin_uuids[0]", "is not a UUID"),
    ],
)
def test_bad_fields_are_named(
    tmp_path: Path, document: object, field: str, problem: str
) -> None:
    """Every invalid field raises a ConfigError naming the file, the field and the
    problem."""
    path = _write(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_environment(tmp_path)
    assert caught.value.field == field
    assert str(caught.value).startswith(f'{path}: field "{field}" {problem}')


def test_not_an_object(tmp_path: Path) -> None:
    """A JSON list instead of an object is refused."""
    _write(tmp_path, [ENV_UUID])
    with pytest.raises(ConfigError, match="is not a JSON object"):
        load_environment(tmp_path)
