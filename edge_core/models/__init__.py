"""The ML model cache: weights the worker needs, made ready on local disk.

``ModelManager.ensure_model`` resolves one model (pre-staged file, intact
cache, Cyberwave-hosted signed URL, upstream URL, fail-soft to the cached
copy); ``discover_models`` finds the ids the workers ask for;
``ensure_worker_models`` does both for the daemon before the worker
starts; ``open_cache`` builds a manager from the settings. Layer 2: it uses
config, cloud and the error vocabulary, and never starts containers or
raises alerts.
"""

from __future__ import annotations

from edge_core.models.discovery import Discovery, discover_models
from edge_core.models.download import Downloader, DownloadOptions
from edge_core.models.errors import ModelError, ModelRejected, ModelUnavailable
from edge_core.models.factory import cache_dir, open_cache
from edge_core.models.inventory import CachedModel, Check, Verification
from edge_core.models.manager import (
    CacheOptions,
    EnsureResult,
    ModelManager,
    Outcome,
)
from edge_core.models.prepare import WorkerModels, ensure_worker_models
from edge_core.models.progress import Phase, Progress, ProgressLog
from edge_core.models.stamps import Verified

__all__ = [
    "CacheOptions",
    "CachedModel",
    "Check",
    "Discovery",
    "DownloadOptions",
    "Downloader",
    "EnsureResult",
    "ModelError",
    "ModelManager",
    "ModelRejected",
    "ModelUnavailable",
    "Outcome",
    "Phase",
    "Progress",
    "ProgressLog",
    "Verification",
    "Verified",
    "WorkerModels",
    "cache_dir",
    "discover_models",
    "ensure_worker_models",
    "open_cache",
]
