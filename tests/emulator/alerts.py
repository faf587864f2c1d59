"""The emulated backend's alerts (protocol.md 1.4 R10–R14 and 1.8).

Creation follows the documented dedupe rule: without ``force``, a POST
matching an ACTIVE alert of the same twin and ``alert_type`` returns that
alert with ``dedupe_count`` and ``last_seen_at`` bumped, and neither its
metadata nor its ``updated_at`` change. Resolved alerts are never dedupe
candidates. The real dedupe key may hold more fields (section 8); twin and
type are the ones the edge core's behaviour depends on.

It is not thread-safe on its own: ``state.Backend`` calls it under its lock.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from tests.emulator.reply import Reply, invalid, not_found, now_iso

SEVERITIES = ("info", "warning", "error", "critical")
STATUSES = ("active", "acknowledged", "resolved")
UPDATE_FIELDS = frozenset(
    {"name", "description", "media", "alert_type", "severity", "status"}
    | {"category", "metadata"}
)
LIST_SHAPES = ("bare", "results", "items")
_FILTERS = ("twin_uuid", "status", "alert_type")


class AlertBook:
    """Every alert by uuid, in creation order."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.list_shape = "results"

    def create(self, body: Any, *, twin_exists: Callable[[str], bool]) -> Reply:
        """POST /alerts: 201 for a new alert, 200 for a deduped one."""
        if not isinstance(body, dict):
            return Reply(400, {"detail": "Expected a JSON object."})
        errors = field_errors(body, creating=True)
        twin_uuid = body.get("twin_uuid")
        if twin_uuid is not None and not twin_exists(twin_uuid):
            errors["twin_uuid"] = f"twin_uuid: no twin {twin_uuid}"
        if errors:
            return invalid(errors)
        existing = (
            None if body.get("force") else self._active(twin_uuid, body["alert_type"])
        )
        if existing is not None:
            existing["dedupe_count"] += 1
            existing["last_seen_at"] = now_iso()
            return Reply(200, copy.deepcopy(existing))
        return Reply(201, copy.deepcopy(self.add(body)))

    def add(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new ACTIVE alert from ``body`` (no validation, no dedupe)."""
        now = now_iso()
        alert = {
            "uuid": str(uuid.uuid4()),
            "name": body["name"],
            "description": body.get("description", ""),
            "alert_type": body["alert_type"],
            "severity": body.get("severity", "info"),
            "status": "active",
            "source_type": body.get("source_type", "edge"),
            "category": body.get("category", "technical"),
            "twin_uuid": body.get("twin_uuid"),
            "environment_uuid": body.get("environment_uuid"),
            "workspace_uuid": body.get("workspace_uuid"),
            "metadata": copy.deepcopy(body.get("metadata") or {}),
            "media": body.get("media"),
            "dedupe_count": 1,
            "created_at": now,
            "updated_at": now,
            "last_seen_at": now,
            "resolved_at": None,
        }
        self.items[alert["uuid"]] = alert
        return alert

    def listing(self, query: Mapping[str, list[str]]) -> Reply:
        """GET /alerts?twin_uuid&status&alert_type&limit, newest first."""
        wanted = {key: values[-1] for key, values in query.items() if values}
        try:
            limit = int(wanted.get("limit", "100"))
        except ValueError:
            return Reply(400, {"limit": ["A valid integer is required."]})
        rows = [
            copy.deepcopy(alert)
            for alert in reversed(self.items.values())
            if all(wanted.get(key) in (None, alert.get(key)) for key in _FILTERS)
        ][: max(0, limit)]
        if self.list_shape == "bare":
            return Reply(200, rows)
        page = {"count": len(rows), "next": None, "previous": None}
        return Reply(200, {**page, self.list_shape: rows})

    def get(self, alert_uuid: str) -> Reply:
        """GET /alerts/{uuid}."""
        alert = self.items.get(alert_uuid)
        if alert is None:
            return not_found("Alert")
        return Reply(200, copy.deepcopy(alert))

    def update(self, alert_uuid: str, body: Any) -> Reply:
        """PUT /alerts/{uuid}: only the keys of R13; metadata is replaced whole."""
        alert = self.items.get(alert_uuid)
        if alert is None:
            return not_found("Alert")
        if not isinstance(body, dict):
            return Reply(400, {"detail": "Expected a JSON object."})
        errors = field_errors(body, creating=False)
        if errors:
            return invalid(errors)
        for key, value in body.items():
            alert[key] = copy.deepcopy(value)
        if body.get("status") == "resolved" and alert["resolved_at"] is None:
            alert["resolved_at"] = now_iso()
        alert["updated_at"] = now_iso()
        return Reply(200, copy.deepcopy(alert))

    def resolve(self, alert_uuid: str) -> Reply:
        """POST /alerts/{uuid}/resolve (resolving twice is harmless)."""
        alert = self.items.get(alert_uuid)
        if alert is None:
            return not_found("Alert")
        _resolve(alert)
        return Reply(200, copy.deepcopy(alert))

    def resolve_where(self, matches: Callable[[dict[str, Any]], bool]) -> list[str]:
        """Resolve every ACTIVE alert ``matches`` accepts; returns their uuids."""
        resolved = []
        for alert in self.items.values():
            if alert["status"] == "active" and matches(alert):
                _resolve(alert)
                resolved.append(alert["uuid"])
        return resolved

    def _active(self, twin_uuid: Any, alert_type: str) -> dict[str, Any] | None:
        for alert in self.items.values():
            if (
                alert["status"] == "active"
                and alert["twin_uuid"] == twin_uuid
                and alert["alert_type"] == alert_type
            ):
                return alert
        return None


def _resolve(alert: dict[str, Any]) -> None:
    if alert["status"] != "resolved":
        alert["status"] = "resolved"
        alert["resolved_at"] = alert["updated_at"] = now_iso()


def field_errors(body: Mapping[str, Any], *, creating: bool) -> dict[str, str]:
    """Field problems of an alert create or update body, by field."""
    errors: dict[str, str] = {}
    if creating:
        for key in ("name", "alert_type"):
            if not isinstance(body.get(key), str) or not body.get(key):
                errors[key] = f"{key}: this field is required"
    else:
        for key in body:
            if key not in UPDATE_FIELDS:
                errors[key] = f"{key}: field not allowed in an alert update"
    if "severity" in body and body["severity"] not in SEVERITIES:
        errors["severity"] = f"severity: must be one of {', '.join(SEVERITIES)}"
    if "status" in body and body["status"] not in STATUSES:
        errors["status"] = f"status: must be one of {', '.join(STATUSES)}"
    if "metadata" in body and not isinstance(body["metadata"], dict | None):
        errors["metadata"] = "metadata: expected object"
    return errors
