"""Downloading the environment: its twins and the assets of linked twins.

"Downloading the environment" is one listing of the environment's twins
plus one asset fetch per linked twin (protocol.md section 7). An asset the
backend cannot serve right now is taken from the previous snapshot when
there is one; otherwise its twin's driver fails alone and the caller tries
again next cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from edge_core.errors import BackendUnavailable, PermanentError
from edge_core.model.linkage import is_linked
from edge_core.twins import desired_state
from edge_core.twins.desired_state import Snapshot

log = logging.getLogger(__name__)


class EnvironmentApi(Protocol):
    def environment_twins(self, env_uuid: str) -> list[dict[str, Any]]: ...

    def get_asset(self, uuid: str) -> dict[str, Any]: ...


def download_environment(
    api: EnvironmentApi,
    environment_uuid: str,
    fingerprint: str,
    previous_assets: Mapping[str, Any],
    *,
    refetch: bool = True,
) -> tuple[Snapshot, bool]:
    """The environment's twins and linked assets; True when complete.

    Without ``refetch`` an asset already in ``previous_assets`` is reused,
    so an idle cycle costs one listing however many twins are linked.
    """
    twins = api.environment_twins(environment_uuid)
    assets: dict[str, Any] = {}
    complete = True
    for twin in twins:
        metadata = twin.get("metadata")
        asset_uuid = twin.get("asset_uuid")
        if not isinstance(asset_uuid, str) or not asset_uuid or asset_uuid in assets:
            continue
        if not is_linked(metadata if isinstance(metadata, dict) else {}, fingerprint):
            continue
        if not refetch and asset_uuid in previous_assets:
            assets[asset_uuid] = previous_assets[asset_uuid]
            continue
        try:
            assets[asset_uuid] = api.get_asset(asset_uuid)
        except PermanentError as exc:
            log.error(
                "asset %s of twin %s is unavailable: %s",
                asset_uuid,
                twin.get("uuid"),
                exc,
            )
        except BackendUnavailable as exc:
            complete = False
            saved = asset_uuid in previous_assets
            if saved:
                assets[asset_uuid] = previous_assets[asset_uuid]
            log.warning(
                "asset %s of twin %s could not be fetched: %s; %s, trying again "
                "next cycle",
                asset_uuid,
                twin.get("uuid"),
                exc,
                "using the saved copy" if saved else "its driver waits",
            )
    return desired_state.new_snapshot(environment_uuid, twins, assets), complete
