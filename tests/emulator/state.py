"""The emulated backend's resources and rules, without any HTTP.

``Backend`` holds workspaces, edges, environments, twins, assets, alerts,
edge-sync workflows and the model catalog, and answers each REST call of
protocol.md 1.4 with a status and a JSON body, following the documented
behaviour: POST /edges is an upsert by fingerprint (201, then 200), PUT
/twins merges ``metadata`` and refuses fields outside 1.7, POST /alerts
dedupes onto an ACTIVE alert of the same twin and type unless ``force`` is
set (1.8), and so on.

It does not parse HTTP, record requests or inject faults (``server`` and
``faults`` do), and it only publishes through the callable it is given.
Where the real backend's behaviour is unknown (protocol.md section 8) the
choice made here is noted at the spot.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tests.emulator.alerts import AlertBook
from tests.emulator.mlmodels import ModelCatalog
from tests.emulator.reply import Reply, invalid, not_found, now_iso

__all__ = ["Backend", "Reply", "now_iso", "substitute_fingerprint", "twin_linked_to"]

DEFAULT_WORKSPACE = {"uuid": "0c9f4d2e-1b7a-4e55-9a3c-6f2d8b1e7c44", "name": "Lab"}
FINGERPRINT_PLACEHOLDER = "<FP>"

_NUMBER = "number"
_STRING = "string"
_OBJECT = "object"
_BOOL = "boolean"
# protocol.md 1.7: the fields PUT /twins accepts, with their strict types; a
# "?" suffix means null is accepted as well.
TWIN_PUT_FIELDS: Mapping[str, str] = {
    "name": _STRING,
    "description": _STRING + "?",
    **{f"position_{axis}": _NUMBER for axis in "xyz"},
    **{f"rotation_{axis}": _NUMBER for axis in "wxyz"},
    **{f"scale_{axis}": _NUMBER for axis in "xyz"},
    "kinematics_override": _OBJECT + "?",
    "joint_calibration": _OBJECT + "?",
    "metadata": _OBJECT,
    "controller_policy_uuid": _STRING + "?",
    "attach_to_twin_uuid": _STRING + "?",
    "attach_to_link": _STRING + "?",
    **{f"attach_offset_{axis}": _NUMBER for axis in "xyz"},
    **{f"attach_offset_rotation_{axis}": _NUMBER for axis in "wxyz"},
    "fixed_base": _BOOL,
}

Publisher = Callable[[str, dict[str, Any]], None]


def substitute_fingerprint(value: Any, fingerprint: str) -> Any:
    """A deep copy of ``value`` with every ``<FP>`` replaced by ``fingerprint``."""
    if isinstance(value, str):
        return value.replace(FINGERPRINT_PLACEHOLDER, fingerprint)
    if isinstance(value, Mapping):
        return {
            key: substitute_fingerprint(item, fingerprint)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [substitute_fingerprint(item, fingerprint) for item in value]
    return value


def twin_linked_to(twin: Mapping[str, Any], fingerprint: str) -> bool:
    """The linkage rule of protocol.md 1.6 (top level, nested, legacy map)."""
    metadata = twin.get("metadata")
    if not isinstance(metadata, Mapping):
        return False
    if metadata.get("edge_fingerprint") == fingerprint:
        return True
    configs = metadata.get("edge_configs")
    if not isinstance(configs, Mapping) or not configs:
        return False
    if configs.get("edge_fingerprint") == fingerprint:
        return True
    legacy = (
        all(isinstance(item, Mapping) for item in configs.values())
        and "edge_fingerprint" not in configs
        and "camera_config" not in configs
    )
    return legacy and fingerprint in configs


class Backend:
    """The emulated Cyberwave backend state; every method is thread-safe."""

    def __init__(self, *, tokens: Iterable[str] = ()) -> None:
        self._lock = threading.RLock()
        self.tokens: list[str] = list(tokens)
        self.workspaces: dict[str, dict[str, Any]] = {
            DEFAULT_WORKSPACE["uuid"]: dict(DEFAULT_WORKSPACE)
        }
        self.environments: dict[str, dict[str, Any]] = {}
        self.twins: dict[str, dict[str, Any]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, dict[str, Any]] = {}
        self.host_facts: dict[str, dict[str, Any]] = {}
        self.alerts = AlertBook()
        self.workflows: dict[str, dict[str, Any]] = {}
        self.mlmodels = ModelCatalog()
        self.require_workspace = False
        self.topic_prefix = ""
        self.publisher: Publisher | None = None
        self._routes = self._route_table()

    # -- auth and routing ----------------------------------------------------

    def authenticate(self, header: str | None) -> str:
        """``valid``, ``invalid`` or ``missing`` for an Authorization header."""
        if not header:
            return "missing"
        scheme, _, token = header.partition(" ")
        with self._lock:
            known = token.strip() in self.tokens
        return "valid" if scheme == "Bearer" and known else "invalid"

    def dispatch(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        body: Any,
        auth: str,
    ) -> Reply:
        """Answer one ``/api/v1`` call."""
        if auth == "missing":
            return Reply(
                401, {"detail": "Authentication credentials were not provided."}
            )
        if auth != "valid":
            return Reply(401, {"detail": "Invalid token."})
        if self.require_workspace and "workspace_uuid" not in query:
            return Reply(400, {"detail": "workspace_required"})
        allowed: list[str] = []
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            with self._lock:
                return handler(match.groupdict(), query, body)
        if allowed:
            return Reply(405, {"detail": f'Method "{method}" not allowed.'})
        return Reply(404, {"detail": "Not found."})

    def _route_table(
        self,
    ) -> list[tuple[str, re.Pattern[str], Callable[..., Reply]]]:
        uid = r"(?P<uuid>[^/]+)"
        table: list[tuple[str, str, Callable[..., Reply]]] = [
            ("GET", "/api/v1/users/workspaces", self._list_workspaces),
            ("POST", "/api/v1/edges", self._register_edge),
            ("GET", "/api/v1/edges", self._list_edges),
            ("POST", "/api/v1/edges/discover", self._discover),
            ("GET", f"/api/v1/edges/{uid}", self._get_edge),
            ("POST", f"/api/v1/edges/{uid}/restart-core", self._restart_core),
            ("GET", f"/api/v1/environments/{uid}/twins", self._environment_twins),
            ("GET", f"/api/v1/twins/{uid}", self._get_twin),
            ("PUT", f"/api/v1/twins/{uid}", self._put_twin),
            ("POST", f"/api/v1/twins/{uid}/sync-workflows", self._sync_workflows),
            ("GET", f"/api/v1/assets/{uid}", self._get_asset),
            ("POST", "/api/v1/alerts", self._create_alert),
            ("GET", "/api/v1/alerts", self._list_alerts),
            ("GET", f"/api/v1/alerts/{uid}", self._get_alert),
            ("PUT", f"/api/v1/alerts/{uid}", self._put_alert),
            ("POST", f"/api/v1/alerts/{uid}/resolve", self._resolve_alert),
            ("GET", f"/api/v1/workflows/edge-sync/{uid}", self._edge_sync),
            ("GET", "/api/v1/mlmodels", self._find_mlmodels),
            ("GET", f"/api/v1/mlmodels/{uid}", self._get_mlmodel),
            ("GET", f"/api/v1/mlmodels/{uid}/weights", self._mlmodel_weights),
        ]
        return [(method, re.compile(path), handler) for method, path, handler in table]

    # -- state loading (control API and tests) -------------------------------

    def load_environment(
        self, fixture: Mapping[str, Any], fingerprint: str
    ) -> dict[str, Any]:
        """Add an environment with its twins and assets (``<FP>`` → fingerprint)."""
        data: dict[str, Any] = substitute_fingerprint(fixture, fingerprint)
        environment = dict(data["environment"])
        with self._lock:
            self.environments[environment["uuid"]] = environment
            workspace = environment.get("workspace_uuid")
            if workspace and workspace not in self.workspaces:
                self.workspaces[workspace] = {"uuid": workspace, "name": "Workspace"}
            for twin in data.get("twins", []):
                twin = copy.deepcopy(twin)
                twin.setdefault("environment_uuid", environment["uuid"])
                self.twins[twin["uuid"]] = twin
            for asset in data.get("assets", []):
                self.assets[asset["uuid"]] = copy.deepcopy(asset)
        return data

    def set_twin(self, twin: Mapping[str, Any]) -> None:
        """Add or replace one twin as is."""
        with self._lock:
            self.twins[str(twin["uuid"])] = copy.deepcopy(dict(twin))

    def edit_twin(self, twin_uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change a twin as another client would (no validation, no merge)."""
        with self._lock:
            twin = self.twins[twin_uuid]
            twin.update(copy.deepcopy(dict(fields)))
            twin["updated_at"] = now_iso()
            return copy.deepcopy(twin)

    def remove_twin(self, twin_uuid: str) -> None:
        """Forget one twin."""
        with self._lock:
            self.twins.pop(twin_uuid, None)

    def set_asset(self, asset: Mapping[str, Any]) -> None:
        """Add or replace one asset as is."""
        with self._lock:
            self.assets[str(asset["uuid"])] = copy.deepcopy(dict(asset))

    def set_workflows(self, twin_uuid: str, answer: Mapping[str, Any]) -> None:
        """What GET /workflows/edge-sync/{twin} answers for ``twin_uuid``."""
        with self._lock:
            self.workflows[twin_uuid] = copy.deepcopy(dict(answer))

    def put_mlmodel(
        self, model: Mapping[str, Any], *, weights: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add or replace a catalog model and its /weights answer (None: 404)."""
        with self._lock:
            return self.mlmodels.put(model, weights=weights)

    def remove_mlmodel(self, model_uuid: str) -> None:
        """Take a model out of the catalog."""
        with self._lock:
            self.mlmodels.remove(model_uuid)

    def snapshot(self, kind: str) -> Any:
        """A deep copy of one collection (``twins``, ``edges``, ``alerts``...)."""
        with self._lock:
            if kind == "alerts":
                return copy.deepcopy(self.alerts.items)
            return copy.deepcopy(getattr(self, kind))

    def edge_by_fingerprint(self, fingerprint: str) -> dict[str, Any] | None:
        """The registered edge with this fingerprint, if any."""
        with self._lock:
            for edge in self.edges.values():
                if edge.get("fingerprint") == fingerprint:
                    return copy.deepcopy(edge)
        return None

    def restart_core(self, edge_uuid: str) -> Reply:
        """What POST /edges/{uuid}/restart-core does (web UI, CLI)."""
        with self._lock:
            return self._restart_core({"uuid": edge_uuid}, {}, None)

    def publish_twin_command(self, twin_uuid: str, payload: Mapping[str, Any]) -> str:
        """Publish ``payload`` on the twin's command topic; returns the topic."""
        topic = f"{self.topic_prefix}cyberwave/twin/{twin_uuid}/command"
        self._publish(topic, dict(payload))
        return topic

    def publish_edge_command(self, edge_uuid: str, payload: Mapping[str, Any]) -> str:
        """Publish ``payload`` on the edge command topic; returns the topic."""
        topic = f"{self.topic_prefix}edges/{edge_uuid}/command"
        self._publish(topic, dict(payload))
        return topic

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.publisher is None:
            raise RuntimeError("the emulator has no broker configured (use_broker)")
        self.publisher(topic, payload)

    # -- R1-R5: workspaces and edges -----------------------------------------

    def _list_workspaces(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return Reply(200, [copy.deepcopy(item) for item in self.workspaces.values()])

    def _register_edge(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        fingerprint = body.get("fingerprint") if isinstance(body, dict) else None
        if not isinstance(fingerprint, str) or not fingerprint:
            return Reply(400, {"fingerprint": ["This field is required."]})
        for edge in self.edges.values():
            if edge["fingerprint"] == fingerprint:
                return Reply(200, copy.deepcopy(edge))
        now = now_iso()
        edge = {
            "uuid": str(uuid.uuid4()),
            "fingerprint": fingerprint,
            "name": body.get("name") or fingerprint,
            "workspace_uuid": body.get("workspace_uuid") or DEFAULT_WORKSPACE["uuid"],
            "hostname": "",
            "platform": "",
            "status": "active",
            "is_online": False,
            "liveness_state": "standby",
            "last_heartbeat": None,
            "last_seen_at": None,
            "last_ip_address": None,
            "created_at": now,
            "updated_at": now,
            "organization_uuid": None,
            "metadata": copy.deepcopy(body.get("metadata") or {}),
        }
        self.edges[edge["uuid"]] = edge
        return Reply(201, copy.deepcopy(edge))

    def _list_edges(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return Reply(200, [copy.deepcopy(edge) for edge in self.edges.values()])

    def _get_edge(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        edge = self.edges.get(args["uuid"])
        if edge is None:
            return not_found("Edge")
        return Reply(200, copy.deepcopy(edge))

    def _discover(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        fingerprint = body.get("fingerprint") if isinstance(body, dict) else None
        if not isinstance(fingerprint, str) or not fingerprint:
            return Reply(400, {"fingerprint": ["This field is required."]})
        edge = next(
            (
                item
                for item in self.edges.values()
                if item["fingerprint"] == fingerprint
            ),
            None,
        )
        # Unknown on the real backend: an unregistered fingerprint is refused
        # here, so a client that discovers before registering is noticed.
        if edge is None:
            return not_found("Edge")
        now = now_iso()
        for key in ("hostname", "platform"):
            if isinstance(body.get(key), str):
                edge[key] = body[key]
        edge.update(
            last_seen_at=now,
            last_heartbeat=now,
            is_online=True,
            liveness_state="online",
            last_ip_address="127.0.0.1",
        )
        self.host_facts[edge["uuid"]] = copy.deepcopy(body.get("host_facts") or {})
        rows = [
            {
                "twin_uuid": twin["uuid"],
                "twin_name": twin.get("name"),
                "camera_config": _camera_config(twin),
            }
            for twin in self.twins.values()
            if twin_linked_to(twin, fingerprint)
        ]
        return Reply(
            200, {"edge_uuid": edge["uuid"], "fingerprint": fingerprint, "twins": rows}
        )

    def _restart_core(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        edge = self.edges.get(args["uuid"])
        if edge is None:
            return not_found("Edge")
        if self.publisher is None:
            return Reply(
                503, {"detail": "MQTT broker not configured; cannot reach the edge."}
            )
        pre_resolved = self.alerts.resolve_where(
            lambda alert: (
                alert["alert_type"] == "edge_core_restart"
                and alert.get("edge_uuid") == edge["uuid"]
            )
        )
        request_id = uuid.uuid4().hex
        alert = self.alerts.add(
            {
                "name": "Edge core restart",
                "description": "A restart of the edge core was requested.",
                "alert_type": "edge_core_restart",
                "severity": "info",
                "metadata": {"phase": "requested", "request_id": request_id},
            }
        )
        alert["edge_uuid"] = edge["uuid"]
        payload = {
            "command": "restart_edge_core",
            "request_id": request_id,
            "alert_uuid": alert["uuid"],
        }
        try:
            topic = self.publish_edge_command(edge["uuid"], payload)
        except Exception as exc:
            return Reply(503, {"detail": f"publishing the command failed: {exc}"})
        return Reply(
            200,
            {
                "success": True,
                "edge_uuid": edge["uuid"],
                "request_id": request_id,
                "command": "restart_edge_core",
                "topic": topic,
                "alert_uuid": alert["uuid"],
                "pre_resolved_alert_uuids": pre_resolved,
            },
        )

    # -- R6-R9: environments, twins, assets ----------------------------------

    def _environment_twins(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        environment_uuid = args["uuid"]
        if environment_uuid not in self.environments:
            return not_found("Environment")
        twins = [
            copy.deepcopy(twin)
            for twin in self.twins.values()
            if twin.get("environment_uuid") == environment_uuid
        ]
        return Reply(200, twins)

    def _get_twin(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        twin = self.twins.get(args["uuid"])
        if twin is None:
            return not_found("Twin")
        return Reply(200, copy.deepcopy(twin))

    def _put_twin(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        twin = self.twins.get(args["uuid"])
        if twin is None:
            return not_found("Twin")
        if not isinstance(body, dict):
            return Reply(400, {"detail": "Expected a JSON object."})
        errors = _twin_field_errors(body)
        if errors:
            return invalid(errors)
        for key, value in body.items():
            if key == "metadata":
                # The installer relies on metadata being merged (protocol.md 1.6).
                merged = dict(twin.get("metadata") or {})
                merged.update(copy.deepcopy(value))
                twin["metadata"] = merged
            else:
                twin[key] = copy.deepcopy(value)
        twin["updated_at"] = now_iso()
        return Reply(200, copy.deepcopy(twin))

    def _sync_workflows(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        if args["uuid"] not in self.twins:
            return not_found("Twin")
        request_id = uuid.uuid4().hex
        payload = {"command": "sync_workflows", "request_id": request_id}
        try:
            topic = self.publish_twin_command(args["uuid"], payload)
        except Exception as exc:
            return Reply(503, {"detail": f"publishing the command failed: {exc}"})
        return Reply(200, {"success": True, "request_id": request_id, "topic": topic})

    def _get_asset(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        asset = self.assets.get(args["uuid"])
        if asset is None:
            return not_found("Asset")
        return Reply(200, copy.deepcopy(asset))

    def _edge_sync(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        answer = self.workflows.get(args["uuid"], {})
        return Reply(
            200,
            {
                "workflows": copy.deepcopy(answer.get("workflows", [])),
                "skipped_workflows": copy.deepcopy(answer.get("skipped_workflows", [])),
            },
        )

    # -- R16-R17: the model catalog (rules in ``mlmodels``) ---------------------

    def _find_mlmodels(
        self, args: dict[str, str], query: Mapping[str, list[str]], body: Any
    ) -> Reply:
        return self.mlmodels.find(query)

    def _get_mlmodel(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return self.mlmodels.get(args["uuid"])

    def _mlmodel_weights(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return self.mlmodels.weights_of(args["uuid"])

    # -- R10-R14: alerts (rules in ``alerts``) -------------------------------

    def _create_alert(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return self.alerts.create(body, twin_exists=self.twins.__contains__)

    def _list_alerts(
        self, args: dict[str, str], query: Mapping[str, list[str]], body: Any
    ) -> Reply:
        return self.alerts.listing(query)

    def _get_alert(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return self.alerts.get(args["uuid"])

    def _put_alert(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return self.alerts.update(args["uuid"], body)

    def _resolve_alert(self, args: dict[str, str], query: Any, body: Any) -> Reply:
        return self.alerts.resolve(args["uuid"])


def _camera_config(twin: Mapping[str, Any]) -> Any:
    configs = (twin.get("metadata") or {}).get("edge_configs")
    if isinstance(configs, Mapping):
        return copy.deepcopy(configs.get("camera_config"))
    return None


def _type_ok(value: Any, expected: str) -> bool:
    nullable = expected.endswith("?")
    kind = expected.rstrip("?")
    if value is None:
        return nullable
    if kind == _NUMBER:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return numeric and math.isfinite(value)
    if kind == _STRING:
        return isinstance(value, str)
    if kind == _OBJECT:
        return isinstance(value, dict)
    return isinstance(value, bool)


def _twin_field_errors(body: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for key, value in body.items():
        expected = TWIN_PUT_FIELDS.get(key)
        if expected is None:
            errors[key] = f"{key}: field not allowed in a twin update"
        elif not _type_ok(value, expected):
            errors[key] = f"{key}: expected {expected.rstrip('?')}"
    return errors
