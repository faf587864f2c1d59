"""Build ``ContainerSpec`` objects by hand, the way the model layer does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edge_core.model.options import RunOptions, merge, parse_params
from edge_core.model.spec import (
    LABEL_CREATED_BY,
    LABEL_SPEC_HASH,
    LABEL_TWIN,
    ContainerSpec,
    spec_hash,
)

TWIN = "5d2e0000-0000-4000-8000-000000000001"


def make_spec(
    name: str,
    *,
    image: str,
    command: Sequence[str] = (),
    params: Sequence[str] = (),
    extra: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    twin_uuid: str = TWIN,
    service: str | None = None,
) -> ContainerSpec:
    """A spec from driver ``params`` overlaid with the edge core's ``extra`` flags."""
    options: RunOptions = merge(
        parse_params(params, source="test params"),
        parse_params(extra, source="test extra"),
    )
    digest = spec_hash(image=image, image_id=None, options=options, command=command)
    edge_labels = {
        LABEL_TWIN: twin_uuid,
        LABEL_SPEC_HASH: digest,
        LABEL_CREATED_BY: "cyberwave-edge-core/test",
    }
    edge_labels.update(labels or {})
    return ContainerSpec(
        name=name,
        image=image,
        twin_uuid=twin_uuid,
        service=service,
        command=tuple(command),
        options=options,
        labels=edge_labels,
        spec_hash=digest,
    )
