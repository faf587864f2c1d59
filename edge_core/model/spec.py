"""The desired shape of one container, frozen, with its spec hash.

A ``ContainerSpec`` is everything the Docker adapter needs to create a
container and everything the planner needs to decide whether a running
container still matches: the hash (protocol.md 4.2) covers image, local
image id, normalized options and command.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_core.model.options import RunOptions

LABEL_TWIN = "io.cyberwave.edge.twin"
LABEL_SERVICE = "io.cyberwave.edge.service"
LABEL_SPEC_HASH = "io.cyberwave.edge.spec-hash"
LABEL_CREATED_BY = "io.cyberwave.edge.created-by"
LABEL_FINGERPRINT = "io.cyberwave.edge.fingerprint"
LABEL_MIN_RESTART = "cyberwave.min_restart_interval_s"

EDGE_LABELS = (
    LABEL_TWIN,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_CREATED_BY,
    LABEL_FINGERPRINT,
)


def spec_hash(
    *,
    image: str,
    image_id: str | None,
    options: RunOptions,
    command: Sequence[str],
    extra_networks: Sequence[str] = (),
) -> str:
    """SHA-256 of the canonical spec object of protocol.md 4.2.

    ``options`` must not carry the edge's own labels: they hold the hash.
    """
    labels = options.get("--label", {})
    clean = dict(options)
    kept = {k: v for k, v in labels.items() if k not in EDGE_LABELS}
    if kept:
        clean["--label"] = kept
    else:
        clean.pop("--label", None)
    document: dict[str, Any] = {
        "schema": 1,
        "image": image,
        "image_id": image_id,
        "options": clean,
        "command": list(command),
        "extra_networks": sorted(extra_networks),
    }
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ContainerSpec:
    """One container the edge core wants to exist.

    ``options`` holds every run flag except the edge labels, which are in
    ``labels`` (they include the spec hash and the fingerprint). It is left
    out of the repr because ``--env`` carries the API token.
    """

    name: str
    image: str
    twin_uuid: str
    service: str | None
    command: tuple[str, ...]
    options: RunOptions = field(hash=False, compare=False, repr=False)
    labels: Mapping[str, str] = field(hash=False, compare=False)
    spec_hash: str = ""

    @property
    def environment(self) -> Mapping[str, str]:
        env: Mapping[str, str] = self.options.get("--env", {})
        return env
