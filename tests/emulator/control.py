"""The emulator's control API under ``/_emulator/`` (no authentication).

It lets a test or ``scripts/demo`` steer an emulator running in another
process the way the in-process ``Emulator`` methods do: load an
environment, read and clear recorded requests, set and clear faults,
rotate tokens, point it at a broker, publish commands, and inspect or edit
twins, edges and alerts. Bodies and answers are JSON.

    GET    health                     {"ok": true, "url": ...}
    POST   environment                {"fingerprint", "fixture"?}  (example if absent)
    GET    requests?method&path_regex recorded API requests
    DELETE requests
    GET    faults / POST faults {path_regex, method?, status?, body?, times?,
           delay?, hang?, drop?} / DELETE faults
    PUT    tokens                     {"tokens": [...]}
    PUT    broker                     {"host", "port", "ca_cert"?, "topic_prefix"?}
    PUT    settings                   {"alert_list_shape"?, "require_workspace"?,
                                       "topic_prefix"?}
    POST   commands                   {"command", "edge_uuid" | "twin_uuid" |
                                       "fingerprint", ...extra keys}
    POST   edges/{uuid}/restart-core  as the web UI does
    GET    published | alerts?twin_uuid&alert_type&status | twins | edges | assets
    PUT    twins/{uuid}               fields to overwrite, as the web UI would
    DELETE twins/{uuid}
    PUT    workflows/{twin_uuid}      the edge-sync answer for that twin

It changes nothing the REST API would not let another client change,
except the faults and tokens, which exist only to test the edge core.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.emulator.faults import Fault
from tests.emulator.state import Reply

if TYPE_CHECKING:
    from tests.emulator.server import Emulator

Query = dict[str, list[str]]
_FAULT_FIELDS = (
    "path_regex",
    "method",
    "status",
    "body",
    "times",
    "delay",
    "hang",
    "drop",
)
_BAD_INPUT = (KeyError, TypeError, ValueError, AttributeError, RuntimeError, re.error)


class ControlApi:
    """Routes ``/_emulator/<tail>`` calls to one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        uid = r"(?P<uuid>[^/]+)"
        table: list[tuple[str, str, Callable[[dict[str, str], Query, Any], Reply]]] = [
            ("GET", "health", self._health),
            ("POST", "environment", self._load),
            ("GET", "requests", self._requests),
            ("DELETE", "requests", self._clear_requests),
            ("GET", "faults", self._faults),
            ("POST", "faults", self._add_fault),
            ("DELETE", "faults", self._clear_faults),
            ("PUT", "tokens", self._tokens),
            ("PUT", "broker", self._broker),
            ("PUT", "settings", self._settings),
            ("POST", "commands", self._command),
            ("POST", f"edges/{uid}/restart-core", self._restart_core),
            ("GET", "published", self._published),
            ("GET", "alerts", self._alerts),
            ("GET", "twins", self._twins),
            ("GET", "edges", self._edges),
            ("GET", "assets", self._assets),
            ("PUT", f"twins/{uid}", self._edit_twin),
            ("DELETE", f"twins/{uid}", self._remove_twin),
            ("PUT", f"workflows/{uid}", self._workflows),
        ]
        self._routes = [
            (method, re.compile(path), handler) for method, path, handler in table
        ]

    def handle(self, method: str, tail: str, query: Query, body: Any) -> Reply:
        """Answer one control call; bad input gives 400 with the reason."""
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(tail)
            if match is None or route_method != method:
                continue
            try:
                return handler(match.groupdict(), query, body)
            except _BAD_INPUT as exc:
                return Reply(400, {"detail": f"{type(exc).__name__}: {exc}"})
        return Reply(404, {"detail": f"no control endpoint {method} /_emulator/{tail}"})

    # -- handlers ----------------------------------------------------------------

    def _health(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        return _ok({"ok": True, "url": self._emulator.url})

    def _load(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        fingerprint = body["fingerprint"]
        fixture = body.get("fixture")
        if fixture is None:
            return _ok(self._emulator.load_example_environment(fingerprint))
        return _ok(self._emulator.load_environment(fixture, fingerprint))

    def _requests(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        found = self._emulator.requests(
            _first(query, "method"), _first(query, "path_regex")
        )
        return _ok([item.to_json() for item in found])

    def _clear_requests(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        self._emulator.clear_requests()
        return _ok()

    def _faults(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        return _ok([fault.to_json() for fault in self._emulator.faults.active()])

    def _add_fault(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        fields = {key: body[key] for key in _FAULT_FIELDS if key in body}
        return _ok(self._emulator.faults.add(Fault(**fields)).to_json())

    def _clear_faults(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        self._emulator.clear_faults()
        return _ok()

    def _tokens(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        tokens = body["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise TypeError("tokens must be a list of strings")
        self._emulator.set_tokens(tokens)
        return _ok()

    def _broker(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        self._emulator.use_broker(
            body["host"],
            int(body["port"]),
            ca_cert=body.get("ca_cert"),
            topic_prefix=body.get("topic_prefix"),
            username=body.get("username"),
            password=body.get("password"),
        )
        return _ok()

    def _settings(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        self._emulator.configure(
            alert_list_shape=body.get("alert_list_shape"),
            require_workspace=body.get("require_workspace"),
        )
        if "topic_prefix" in body:
            self._emulator.backend.topic_prefix = str(body["topic_prefix"])
        return _ok()

    def _command(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        fields = dict(body)
        name = fields.pop("command")
        fingerprint = fields.pop("fingerprint", None)
        if fingerprint is not None:
            edge = self._emulator.edge_by_fingerprint(fingerprint)
            if edge is None:
                return Reply(404, {"detail": f"no edge registered as {fingerprint}"})
            fields["edge_uuid"] = edge["uuid"]
        return _ok(self._emulator.publish_command(name, **fields))

    def _restart_core(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        return self._emulator.restart_core(args["uuid"])

    def _published(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        return _ok([[topic, payload] for topic, payload in self._emulator.published()])

    def _alerts(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        alerts = self._emulator.alerts(
            twin_uuid=_first(query, "twin_uuid"),
            alert_type=_first(query, "alert_type"),
            status=_first(query, "status"),
        )
        return _ok(alerts)

    def _twins(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        return _ok(self._emulator.twins)

    def _edges(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        return _ok(self._emulator.edges)

    def _assets(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        return _ok(self._emulator.assets)

    def _edit_twin(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        if args["uuid"] not in self._emulator.backend.twins:
            return Reply(404, {"detail": f"no twin {args['uuid']}"})
        return _ok(self._emulator.edit_twin(args["uuid"], body))

    def _remove_twin(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        self._emulator.backend.remove_twin(args["uuid"])
        return _ok()

    def _workflows(self, args: dict[str, str], query: Query, body: Any) -> Reply:
        self._emulator.backend.set_workflows(args["uuid"], body)
        return _ok()


def _ok(body: Any = None) -> Reply:
    return Reply(200, {"ok": True} if body is None else body)


def _first(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None
