"""The Docker adapter: containers, images and logs over the docker SDK.

Everything above this package talks to Docker through ``DockerRuntime``
and reads containers as ``ContainerView``; no other module imports the
docker SDK.
"""

from __future__ import annotations

from edge_core.runtime.container import ContainerState, ContainerView
from edge_core.runtime.docker import DockerRuntime, EngineFacts
from edge_core.runtime.errors import ForeignContainerError
from edge_core.runtime.images import (
    RETRY_ANONYMOUSLY,
    EnsuredImage,
    PullEvent,
    PullFailed,
)
from edge_core.runtime.logs import LogStream
from edge_core.runtime.probe import ProbeResult
from edge_core.runtime.translate import CreateArgs, create_args

__all__ = [
    "RETRY_ANONYMOUSLY",
    "ContainerState",
    "ContainerView",
    "CreateArgs",
    "DockerRuntime",
    "EngineFacts",
    "EnsuredImage",
    "ForeignContainerError",
    "LogStream",
    "ProbeResult",
    "PullEvent",
    "PullFailed",
    "create_args",
]
