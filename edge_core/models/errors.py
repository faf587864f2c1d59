"""The model cache's errors, as branches of the project's error vocabulary.

``ensure_model`` raises exactly two kinds, both a ``ModelError`` so the
caller can raise one ``model_download_failure`` alert per model:

    EdgeCoreError
    └── ModelError                 names the model in ``model_id``
        ├── ModelRejected          also a PermanentError: the cache refuses
        │                          the model as it is (bad id, a file that
        │                          fails its hand-written checksum, a
        │                          directory it cannot read); a person acts
        └── ModelUnavailable       also a TemporaryError: nothing intact on
                                   disk and no source delivered a good file;
                                   a later try may succeed

``DownloadError`` stays inside the cache: one source failing one way.
"""

from __future__ import annotations

from edge_core.errors import EdgeCoreError, PermanentError, TemporaryError


class ModelError(EdgeCoreError):
    """A model could not be made ready."""

    def __init__(self, message: str, *, model_id: str) -> None:
        super().__init__(message)
        self.model_id = model_id


class ModelRejected(ModelError, PermanentError):
    """The cache refuses the model as it is; the message says what to fix."""


class ModelUnavailable(ModelError, TemporaryError):
    """No intact copy exists and no source delivered one; try again later."""


class DownloadError(TemporaryError):
    """One download source failed.

    ``retryable`` says whether another attempt at the same URL may work
    (a cut connection may; a 403, a full disk or a wrong checksum will not).
    """

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class LockTimeout(TemporaryError):
    """Another process held a cache lock for longer than we wait."""
