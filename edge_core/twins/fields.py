"""Which fields of a local twin JSON may be pushed, and with which types.

A push (protocol.md 1.7, R8) carries only the allowed top-level fields
that are present in the file, each with a strict type: strings, int or
float numbers, objects, booleans. A field of the wrong type is left out
and reported, so one bad value a driver wrote does not block the other
fields. A null counts as absent (protocol.md 1.5) and is left out silently.

This module only shapes the body; it does not read files or send it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STRING = "string"
NUMBER = "number"
OBJECT = "object"
BOOLEAN = "boolean"

PUSH_FIELD_TYPES: Mapping[str, str] = {
    "name": STRING,
    "description": STRING,
    **{f"position_{axis}": NUMBER for axis in "xyz"},
    **{f"rotation_{axis}": NUMBER for axis in "wxyz"},
    **{f"scale_{axis}": NUMBER for axis in "xyz"},
    "kinematics_override": OBJECT,
    "joint_calibration": OBJECT,
    "metadata": OBJECT,
    "controller_policy_uuid": STRING,
    "attach_to_twin_uuid": STRING,
    "attach_to_link": STRING,
    **{f"attach_offset_{axis}": NUMBER for axis in "xyz"},
    **{f"attach_offset_rotation_{axis}": NUMBER for axis in "wxyz"},
    "fixed_base": BOOLEAN,
}


@dataclass(frozen=True)
class PushBody:
    """The fields to send, and the present fields left out for their type."""

    fields: Mapping[str, Any]
    wrong_types: Mapping[str, str]
    """Field name → the type it should have had."""


def push_body(document: Mapping[str, Any]) -> PushBody:
    """The allowed, well-typed top-level fields of a twin document."""
    fields: dict[str, Any] = {}
    wrong: dict[str, str] = {}
    for name, expected in PUSH_FIELD_TYPES.items():
        value = document.get(name)
        if value is None:
            continue
        if not has_type(value, expected):
            wrong[name] = expected
            continue
        fields[name] = finite(value)
    return PushBody(fields=fields, wrong_types=wrong)


def has_type(value: object, expected: str) -> bool:
    """True when ``value`` is of the strict JSON type ``expected``."""
    if expected == NUMBER:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return numeric and math.isfinite(value)  # type: ignore[arg-type]
    if expected == STRING:
        return isinstance(value, str)
    if expected == OBJECT:
        return isinstance(value, dict)
    return isinstance(value, bool)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity inside it replaced by None.

    Python's JSON reader accepts them but they are not JSON, and the
    backend would refuse the whole body for one of them (protocol.md 2.7
    serialises them as null the same way).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def changed_body(
    local: Mapping[str, Any],
    base: Mapping[str, Any] | None,
    remote_metadata: Mapping[str, Any] | None,
) -> PushBody:
    """The push of an edited document: only what the edit changed.

    ``base`` is the document as it was last written or pushed; without it
    (after the edge core restarted) every allowed field is sent, as
    ``push_body`` does. ``metadata`` is sent as the backend's of this
    cycle (``remote_metadata``) with the keys the edit changed, added or
    removed, so a key changed on the backend meanwhile is not sent back as
    it was.
    """
    body = push_body(local)
    if base is None:
        return body
    before = push_body(base).fields
    fields = {
        name: value
        for name, value in body.fields.items()
        if name != "metadata" and before.get(name) != value
    }
    metadata = body.fields.get("metadata")
    if metadata is not None and metadata != before.get("metadata"):
        fields["metadata"] = merged_metadata(
            metadata, before.get("metadata") or {}, remote_metadata
        )
    return PushBody(fields=fields, wrong_types=body.wrong_types)


def merged_metadata(
    local: Mapping[str, Any],
    base: Mapping[str, Any],
    remote: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``remote`` (else ``base``) with what ``local`` changed since ``base``.

    Objects are merged key by key at every depth, so the web UI setting
    ``sensors.cam1.fps`` while the driver sets ``sensors.cam2.fps`` keeps
    both; any other changed value is the driver's.
    """
    result: dict[str, Any] = finite(
        _merge(local, base, remote if remote is not None else base)
    )
    return result


def _merge(
    local: Mapping[str, Any], base: Mapping[str, Any], remote: Mapping[str, Any]
) -> dict[str, Any]:
    merged = dict(remote)
    for key in set(local) | set(base):
        if key not in local:
            merged.pop(key, None)
            continue
        mine, before, theirs = local[key], base.get(key), remote.get(key)
        if mine == before:
            continue
        if (
            isinstance(mine, Mapping)
            and isinstance(before, Mapping)
            and isinstance(theirs, Mapping)
        ):
            merged[key] = _merge(mine, before, theirs)
        else:
            merged[key] = mine
    return merged
