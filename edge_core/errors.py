"""The project's small error vocabulary.

Every adapter (files, REST, MQTT, Docker) translates the errors of the
library beneath it into one of these, in one place, so callers decide on
exactly two questions: will trying again help, and what should a person do.

    EdgeCoreError
    ├── PermanentError          trying again will not help
    │   ├── ConfigError         a file or setting is wrong: names file, field, fix
    │   ├── AuthError           the backend refused the token (401/403)
    │   ├── NotFoundError       the backend has no such object (404)
    │   └── DriverSpecError     a twin's driver metadata cannot become a container
    └── TemporaryError          trying again later may help (carries a delay)
        ├── BackendUnavailable  network error, timeout or 5xx from the backend
        ├── BrokerUnavailable   the MQTT broker cannot be reached
        └── RuntimeUnavailable  the Docker engine cannot be reached
"""

from __future__ import annotations


class EdgeCoreError(Exception):
    """Base of every error this project raises on purpose."""


class PermanentError(EdgeCoreError):
    """Trying the same thing again will fail the same way."""


class TemporaryError(EdgeCoreError):
    """Trying again later may succeed; ``retry_after`` suggests when (seconds)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(PermanentError):
    """A configuration file or setting is unusable.

    The message is one line naming the file, the field and the fix, e.g.
    ``/root/.cyberwave/credentials.json: field "token" is empty; run
    "sudo cyberwave edge install" to log in again``.
    """

    def __init__(self, path: str, field: str | None, problem: str, fix: str) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        self.fix = fix
        where = f'{path}: field "{field}"' if field else path
        super().__init__(f"{where} {problem}; {fix}")


class AuthError(PermanentError):
    """The backend rejected the API token (HTTP 401 or 403)."""


class NotFoundError(PermanentError):
    """The backend answered 404 for an object."""


class DriverSpecError(PermanentError):
    """A twin's driver metadata cannot be turned into a container spec."""


class BackendUnavailable(TemporaryError):
    """The Cyberwave backend could not be reached or answered 5xx."""


class BrokerUnavailable(TemporaryError):
    """The MQTT broker could not be reached or refused the session."""


class RuntimeUnavailable(TemporaryError):
    """The Docker engine could not be reached."""


class ContainerError(EdgeCoreError):
    """A Docker operation on one container or image failed.

    ``phase`` is the failure phase reported in alerts (protocol.md 1.8),
    e.g. ``docker_create_failed`` or ``image_missing``.
    """

    def __init__(self, message: str, *, phase: str) -> None:
        super().__init__(message)
        self.phase = phase
