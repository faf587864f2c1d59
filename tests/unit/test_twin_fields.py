"""The body of a twin push: allowed fields only, strict types."""

from __future__ import annotations

import math

from edge_core.cloud.rest import TWIN_PUSH_FIELDS
from edge_core.twins.fields import PUSH_FIELD_TYPES, merged_metadata, push_body
from tests.emulator.state import TWIN_PUT_FIELDS


def test_field_table_matches_the_client_and_the_emulator() -> None:
    """The typed table, the REST client's filter and the emulator agree on 1.7."""
    assert set(PUSH_FIELD_TYPES) == set(TWIN_PUSH_FIELDS)
    assert set(PUSH_FIELD_TYPES) == set(TWIN_PUT_FIELDS)


def test_only_allowed_present_fields_are_kept() -> None:
    """Unknown and forbidden keys are left out; so are nulls."""
    body = push_body(
        {
            "uuid": "t1",
            "asset_uuid": "a1",
            "environment_uuid": "e1",
            "name": "arm",
            "description": None,
            "position_x": 1,
            "rotation_w": 0.5,
            "metadata": {"k": "v"},
            "fixed_base": False,
            "joint_states": {"j": 1.0},
        }
    )

    assert body.fields == {
        "name": "arm",
        "position_x": 1,
        "rotation_w": 0.5,
        "metadata": {"k": "v"},
        "fixed_base": False,
    }
    assert body.wrong_types == {}


def test_wrong_types_are_reported_not_sent() -> None:
    """Booleans are not numbers, strings are not objects, NaN is not a number."""
    body = push_body(
        {
            "name": 3,
            "position_x": True,
            "position_y": float("nan"),
            "metadata": "{}",
            "fixed_base": 1,
            "attach_to_link": ["link"],
        }
    )

    assert body.fields == {}
    assert body.wrong_types == {
        "name": "string",
        "position_x": "number",
        "position_y": "number",
        "metadata": "object",
        "fixed_base": "boolean",
        "attach_to_link": "string",
    }


def test_non_finite_numbers_inside_objects_become_null() -> None:
    """A NaN deep in metadata would make the whole body invalid JSON."""
    body = push_body({"metadata": {"a": [1.0, math.inf], "b": {"c": float("nan")}}})

    assert body.fields == {"metadata": {"a": [1.0, None], "b": {"c": None}}}


def test_metadata_edits_on_both_sides_merge_at_every_depth() -> None:
    """The UI sets ``sensors.cam1.fps`` while the driver sets
    ``sensors.cam2.fps``: the push keeps both; a key the driver removed
    stays removed and a value both changed is the driver's."""
    base = {"sensors": {"cam1": {"fps": 30}, "cam2": {"fps": 30}}, "gain": 1, "old": 1}
    remote = {
        "sensors": {"cam1": {"fps": 15}, "cam2": {"fps": 30}},
        "gain": 2,
        "old": 1,
    }
    local = {"sensors": {"cam1": {"fps": 30}, "cam2": {"fps": 60}}, "gain": 3}

    assert merged_metadata(local, base, remote) == {
        "sensors": {"cam1": {"fps": 15}, "cam2": {"fps": 60}},
        "gain": 3,
    }
