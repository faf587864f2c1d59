"""Payload encoding and decoding for MQTT (protocol.md 2.3, 2.7)."""

from __future__ import annotations

import json
import math

import pytest

from edge_core.cloud.mqtt import decode_payload, encode_payload


def test_session_id_is_added_to_json_objects() -> None:
    """A mapping gets session_id = the client id."""
    data = json.loads(encode_payload({"type": "edge_health"}, session_id="cid"))
    assert data == {"type": "edge_health", "session_id": "cid"}


def test_existing_session_id_is_kept() -> None:
    """A payload that already has session_id keeps its own value."""
    data = json.loads(encode_payload({"session_id": "mine"}, session_id="cid"))
    assert data == {"session_id": "mine"}


def test_no_session_id_when_disabled() -> None:
    """session_id=None (worker_health) leaves the object as it is."""
    assert encode_payload({"a": 1}, session_id=None) == b'{"a":1}'


def test_non_finite_numbers_become_null_at_any_depth() -> None:
    """NaN and ±Inf are sent as null, also inside lists and nested objects."""
    payload = {"a": math.nan, "b": [1.5, math.inf], "c": {"d": -math.inf}}
    raw = encode_payload(payload, session_id=None)
    assert json.loads(raw) == {"a": None, "b": [1.5, None], "c": {"d": None}}
    assert b"NaN" not in raw and b"Infinity" not in raw


def test_bytes_and_text_are_sent_unchanged() -> None:
    """Raw bytes and strings are not wrapped or given a session_id."""
    assert encode_payload(b'{"x":1}', session_id="cid") == b'{"x":1}'
    assert encode_payload("héllo", session_id="cid") == "héllo".encode()


def test_unserialisable_value_raises_type_error() -> None:
    """A value JSON cannot hold is refused instead of sent half-encoded."""
    with pytest.raises(TypeError):
        encode_payload({"when": object()}, session_id=None)


def test_decode_parses_json_then_falls_back_to_text_then_bytes() -> None:
    """Incoming payloads become JSON values, else text, else raw bytes."""
    assert decode_payload(b'{"command": "x"}') == {"command": "x"}
    assert decode_payload(b"plain words") == "plain words"
    assert decode_payload(b"\xff\xfe") == b"\xff\xfe"


def test_json_nested_beyond_the_parser_limit_is_kept_as_text() -> None:
    """100 000 nested arrays do not raise (RecursionError would end paho's
    network thread); the payload is handed on as the text it is."""
    raw = b"[" * 100_000 + b"]" * 100_000
    assert decode_payload(raw) == raw.decode()
