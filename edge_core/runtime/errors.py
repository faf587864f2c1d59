"""Docker SDK, requests and urllib3 errors become the project's errors here.

Every engine call of the adapter runs inside ``translate_errors``, so the
rest of the edge core sees exactly three kinds of trouble from Docker:
``RuntimeUnavailable`` (the engine cannot be reached: try later),
``ContainerError`` with the failure phase of protocol.md 1.8, and
``ForeignContainerError`` (a container of that name belongs to someone
else and is never touched). This module decides nothing else: it does not
retry and does not log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
import urllib3.exceptions
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from edge_core.errors import ContainerError, PermanentError, RuntimeUnavailable

ENGINE_FIX = "is the Docker engine running? try: sudo systemctl start docker"
PRIVILEGED_FIX = (
    "set CYBERWAVE_DRIVER_PRIVILEGED=false to run drivers without --privileged"
)
# How long a caller should wait before trying an unreachable engine again.
ENGINE_RETRY_AFTER = 10.0

# Fragments of the runtime's refusal to start a privileged container on a
# host (or inside a container) that does not grant every capability.
_PRIVILEGE_REFUSALS = (
    "unable to apply caps",
    "operation not permitted",
)
_CONNECTION_HINTS = (
    "connection aborted",
    "connection refused",
    "error while fetching server api version",
    "no such file or directory",
    "remotedisconnected",
)


class ForeignContainerError(PermanentError):
    """A container with the wanted name exists but another owner created it."""

    def __init__(self, name: str, owner: str | None, fingerprint: str) -> None:
        self.name = name
        self.owner = owner
        label = f"fingerprint {owner!r}" if owner else "no edge fingerprint label"
        super().__init__(
            f"container {name} exists but is not managed by this edge core "
            f"({label}, expected {fingerprint!r}); it is left untouched: "
            f"remove or rename it by hand if it should be replaced"
        )


def one_line(error: BaseException) -> str:
    """The error's message on a single line, without the SDK's wrapping."""
    text = error.explanation if isinstance(error, APIError) else None
    message = str(text) if text else str(error)
    return " ".join(message.split()) or type(error).__name__


def is_engine_unreachable(error: BaseException) -> bool:
    """True when ``error`` means the engine itself could not be reached."""
    if isinstance(error, APIError):
        return False
    if isinstance(
        error,
        (
            requests.exceptions.ConnectionError,
            urllib3.exceptions.ProtocolError,
            ConnectionError,
        ),
    ):
        return not isinstance(error, requests.exceptions.ReadTimeout)
    if isinstance(error, DockerException):
        lowered = str(error).lower()
        return any(hint in lowered for hint in _CONNECTION_HINTS)
    return False


def engine_unavailable(error: BaseException, *, where: str = "") -> RuntimeUnavailable:
    """The ``RuntimeUnavailable`` for an engine that cannot be reached."""
    target = f" at {where}" if where else ""
    return RuntimeUnavailable(
        f"Docker engine{target} is unreachable ({one_line(error)}); {ENGINE_FIX}",
        retry_after=ENGINE_RETRY_AFTER,
    )


def is_privilege_refusal(message: str) -> bool:
    """True when the runtime refused to grant a privileged container's rights."""
    lowered = message.lower()
    return any(fragment in lowered for fragment in _PRIVILEGE_REFUSALS)


def _is_timeout(error: BaseException) -> bool:
    return isinstance(
        error,
        (
            requests.exceptions.Timeout,
            urllib3.exceptions.TimeoutError,
            TimeoutError,
        ),
    )


@contextmanager
def translate_errors(
    action: str,
    *,
    phase: str,
    timeout_phase: str | None = None,
    privileged: bool = False,
) -> Iterator[None]:
    """Run one engine call and turn its failures into the project's errors.

    ``action`` names what was attempted and on what object, e.g.
    ``"create container cyberwave-driver-1a2b3c4d"``. ``phase`` is the
    failure phase for a refusal, ``timeout_phase`` the one for an engine
    that did not answer in time (defaults to ``phase``). With
    ``privileged`` a refusal caused by missing capabilities names the
    setting that avoids ``--privileged``.
    """
    try:
        yield
    except ImageNotFound as exc:
        raise ContainerError(
            f"{action} failed: image not found ({one_line(exc)}); "
            f"pull the image or check its name",
            phase="image_missing",
        ) from exc
    except (DockerException, requests.exceptions.RequestException, OSError) as exc:
        if is_engine_unreachable(exc):
            raise engine_unavailable(exc) from exc
        if _is_timeout(exc):
            raise ContainerError(
                f"{action} timed out: the Docker engine did not answer in time "
                f"({one_line(exc)}); it will be tried again",
                phase=timeout_phase or phase,
            ) from exc
        detail = one_line(exc)
        fix = "check the message above and the driver's settings"
        if isinstance(exc, NotFound):
            fix = "the container or image was removed meanwhile"
        if privileged and is_privilege_refusal(detail):
            fix = PRIVILEGED_FIX
        raise ContainerError(f"{action} failed: {detail}; {fix}", phase=phase) from exc
