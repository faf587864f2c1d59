"""The emulated model catalog: R16 (``/mlmodels``) and R17 (``/weights``).

Tests put catalog objects in as the real backend would return them (any
shape: the edge core must read the fields of protocol.md 1.10 wherever
they are) and say per model what ``/weights`` answers: a signed URL, an
arbitrary body, or nothing (404, "not hosted"). The weight files
themselves are served by ``tests.support.weights_server``, never here.

The query form answers a bare list of the matching objects; whether the
real backend paginates it is unknown (protocol.md section 8).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tests.emulator.reply import Reply, not_found


class ModelCatalog:
    """Catalog objects by uuid and the weights answer of each hosted one."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {}
        self.weights: dict[str, dict[str, Any]] = {}

    def put(
        self, model: Mapping[str, Any], *, weights: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add or replace one catalog object (it needs a ``uuid``)."""
        stored = copy.deepcopy(dict(model))
        self.models[str(stored["uuid"])] = stored
        if weights is None:
            self.weights.pop(str(stored["uuid"]), None)
        else:
            self.weights[str(stored["uuid"])] = copy.deepcopy(dict(weights))
        return copy.deepcopy(stored)

    def remove(self, model_uuid: str) -> None:
        """Forget one model and its weights answer."""
        self.models.pop(model_uuid, None)
        self.weights.pop(model_uuid, None)

    def get(self, model_uuid: str) -> Reply:
        """GET /mlmodels/{uuid}."""
        model = self.models.get(model_uuid)
        if model is None:
            return not_found("MLModel")
        return Reply(200, copy.deepcopy(model))

    def find(self, query: Mapping[str, list[str]]) -> Reply:
        """GET /mlmodels?model_external_id=<id> (other filters are ignored)."""
        wanted = (query.get("model_external_id") or [None])[-1]
        matches = [
            copy.deepcopy(model)
            for model in self.models.values()
            if wanted is None or model.get("model_external_id") == wanted
        ]
        return Reply(200, matches)

    def weights_of(self, model_uuid: str) -> Reply:
        """GET /mlmodels/{uuid}/weights: 404 when the model is not hosted."""
        if model_uuid not in self.models:
            return not_found("MLModel")
        answer = self.weights.get(model_uuid)
        if answer is None:
            return Reply(404, {"detail": "This model has no hosted weights."})
        return Reply(200, copy.deepcopy(answer))
