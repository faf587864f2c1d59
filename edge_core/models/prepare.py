"""Making every model the workers name ready, in one call for the daemon.

Before the worker container starts (protocol.md 1.10, 4.9), the daemon
needs one answer: are all the models the worker files ask for on disk?
``ensure_worker_models`` discovers the ids, ensures each (a failure in one
never stops the others) and returns what is ready, what failed and what
was wrong with the worker files. Raising ``model_download_failure``
alerts and deciding whether to start the worker stay with the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge_core.models.discovery import discover_models
from edge_core.models.errors import ModelError
from edge_core.models.manager import EnsureResult, ModelManager
from edge_core.models.progress import ProgressCallback

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerModels:
    """The outcome of making the workers' models ready.

    ``problems`` are lines about unreadable worker files or YAML; they do
    not make the outcome fail on their own.
    """

    ready: tuple[EnsureResult, ...]
    failed: tuple[ModelError, ...]
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every required model is ready (or deferred)."""
        return not self.failed


def ensure_worker_models(
    manager: ModelManager,
    workers_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
) -> WorkerModels:
    """Discover the models named in ``workers_dir`` and ensure each of them."""
    found = discover_models(workers_dir)
    for problem in found.problems:
        _log.warning("%s", problem)
    ready: list[EnsureResult] = []
    failed: list[ModelError] = []
    for outcome in manager.ensure_models(found.model_ids, on_progress=on_progress):
        if isinstance(outcome, ModelError):
            failed.append(outcome)
        else:
            ready.append(outcome)
    if found.model_ids:
        _log.info(
            "worker models: %d ready, %d failed (%s)",
            len(ready),
            len(failed),
            ", ".join(found.model_ids),
        )
    return WorkerModels(tuple(ready), tuple(failed), found.problems)
