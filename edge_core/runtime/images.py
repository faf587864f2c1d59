"""Image pulls over the Engine API, with typed progress and a stall watchdog.

The engine streams one JSON object per progress change while it pulls.
This module turns each into a ``PullEvent`` for the caller, aborts a pull
that has been silent for longer than the stall timeout, and reduces the
engine's many failure shapes (an HTTP error before the stream, an
``error`` object inside it, a silent registry) to ``ContainerError`` with
the phase of protocol.md 1.8.

The stall watchdog is the read timeout of the streaming request: every
progress event is a write on the socket, so a read that waits longer than
``stall_timeout`` is exactly "no event for stall_timeout". That is why
the request is issued here rather than through ``APIClient.pull``, which
reads the stream without any timeout.

It does not decide when to pull (``DockerRuntime.ensure_image`` does) and
does not report progress anywhere itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions
from docker import APIClient, auth
from docker.utils import parse_repository_tag

from edge_core.errors import ContainerError
from edge_core.runtime.errors import (
    engine_unavailable,
    is_engine_unreachable,
    one_line,
)

log = logging.getLogger(__name__)

# Status of the synthetic event sent before the anonymous retry.
RETRY_ANONYMOUSLY = "registry refused the stored credentials; retrying anonymously"

_UNAUTHORIZED = ("unauthorized", "incorrect username or password")


@dataclass(frozen=True)
class PullEvent:
    """One progress message of the engine during a pull."""

    image: str
    layer: str | None
    status: str
    current: int | None
    total: int | None
    raw_line: str


@dataclass(frozen=True)
class EnsuredImage:
    """The outcome of making an image available locally.

    ``warning`` is set when a pull failed and the local copy was used;
    ``pull_error_phase`` then says how the pull failed (``pull_failed`` or
    ``pull_timeout``).
    """

    image_id: str
    pulled: bool
    used_local: bool
    warning: str | None = None
    pull_error_phase: str | None = None


def image_tag(ref: str) -> str | None:
    """The tag of an image reference, or None when it has none.

    The Docker rule: the tag is the text after the last ``:`` when no
    ``/`` follows it. A digest reference (``@sha256:…``) has no tag.
    """
    if "@" in ref:
        return None
    name, sep, tag = ref.rpartition(":")
    if not sep or not name or "/" in tag:
        return None
    return tag


def is_local_tag(ref: str) -> bool:
    """True for tags that name a locally built image (protocol.md 4.3 item 4)."""
    tag = image_tag(ref)
    if tag is None:
        return False
    return tag == "local" or tag.startswith("local-") or tag.endswith("-local")


def is_unauthorized(message: str) -> bool:
    """True when a registry message means the credentials were refused."""
    lowered = message.lower()
    return any(fragment in lowered for fragment in _UNAUTHORIZED)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def to_event(image: str, message: Mapping[str, Any], raw_line: str) -> PullEvent:
    """The typed event for one decoded progress object."""
    detail = message.get("progressDetail")
    detail = detail if isinstance(detail, Mapping) else {}
    layer = message.get("id")
    return PullEvent(
        image=image,
        layer=str(layer) if layer else None,
        status=str(message.get("status") or ""),
        current=_int_or_none(detail.get("current")),
        total=_int_or_none(detail.get("total")),
        raw_line=raw_line,
    )


def _error_of(message: Mapping[str, Any]) -> str | None:
    error = message.get("error")
    if error:
        return " ".join(str(error).split())
    detail = message.get("errorDetail")
    if isinstance(detail, Mapping) and detail.get("message"):
        return " ".join(str(detail["message"]).split())
    return None


def _is_stall(error: BaseException) -> bool:
    if isinstance(
        error, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError)
    ):
        return True
    cause = error.args[0] if error.args else None
    return isinstance(cause, urllib3.exceptions.ReadTimeoutError)


class PullFailed(ContainerError):
    """A pull failed; ``reason`` is the registry's or engine's own words."""

    def __init__(self, message: str, *, phase: str, reason: str) -> None:
        super().__init__(message, phase=phase)
        self.reason = reason


class _PullRefused(Exception):
    """The engine or the registry refused the pull with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _headers(
    api: APIClient, repository: str, auth_config: Mapping[str, str] | None
) -> dict[str, str]:
    if auth_config is not None:
        # An empty mapping encodes as "{}": an explicitly anonymous pull.
        return {"X-Registry-Auth": auth.encode_header(dict(auth_config))}
    registry, _ = auth.resolve_repository_name(repository)
    header = auth.get_config_header(api, registry)
    return {"X-Registry-Auth": header} if header else {}


def _stream(
    api: APIClient,
    ref: str,
    *,
    auth_config: Mapping[str, str] | None,
    stall_timeout: float,
) -> Iterator[tuple[Mapping[str, Any], str]]:
    """Decoded progress objects of one pull, each with its raw line."""
    repository, tag = parse_repository_tag(ref)
    params = {"fromImage": repository, "tag": tag or "latest"}
    url = f"{api.base_url}/v{api.api_version}/images/create"
    response = api.post(
        url,
        params=params,
        headers=_headers(api, repository, auth_config),
        stream=True,
        timeout=stall_timeout,
    )
    with response:
        if response.status_code >= 400:
            raise _PullRefused(_response_message(response))
        for raw in response.iter_lines():
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                decoded = json.loads(line)
            except ValueError:
                decoded = {"status": line}
            if isinstance(decoded, Mapping):
                yield decoded, line


def _response_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and body.get("message"):
        return " ".join(str(body["message"]).split())
    text = " ".join(response.text.split())
    return text or f"HTTP {response.status_code}"


def _pull_once(
    api: APIClient,
    ref: str,
    *,
    on_progress: Callable[[PullEvent], None],
    stall_timeout: float,
    auth_config: Mapping[str, str] | None,
) -> None:
    """One pull attempt; raises ``_PullRefused`` with the registry's words."""
    for message, line in _stream(
        api, ref, auth_config=auth_config, stall_timeout=stall_timeout
    ):
        error = _error_of(message)
        if error is not None:
            raise _PullRefused(error)
        on_progress(to_event(ref, message, line))


def pull(
    api: APIClient,
    ref: str,
    *,
    on_progress: Callable[[PullEvent], None],
    stall_timeout: float,
    auth_config: Mapping[str, str] | None = None,
) -> None:
    """Pull ``ref``, calling ``on_progress`` for every engine message.

    ``auth_config`` None uses the credentials stored for the registry in
    the Docker client configuration. When the registry refuses them as
    unauthorized, the pull is tried once more anonymously (protocol.md
    4.3), announced by an event whose status is ``RETRY_ANONYMOUSLY``.

    Raises ``ContainerError`` with phase ``pull_timeout`` when the engine
    is silent for ``stall_timeout`` seconds, ``pull_failed`` when the
    registry or engine refuses, and ``RuntimeUnavailable`` when the engine
    cannot be reached.
    """
    attempts: list[Mapping[str, str] | None] = [auth_config, {}]
    for attempt, credentials in enumerate(attempts):
        try:
            _pull_once(
                api,
                ref,
                on_progress=on_progress,
                stall_timeout=stall_timeout,
                auth_config=credentials,
            )
            return
        except _PullRefused as refusal:
            retry = (
                attempt == 0 and credentials != {} and is_unauthorized(refusal.message)
            )
            if not retry:
                raise PullFailed(
                    f"pull of image {ref} failed: {refusal.message}; check the "
                    f"image name, the tag and the registry",
                    phase="pull_failed",
                    reason=refusal.message,
                ) from None
            log.info("registry refused %s as unauthorized; retrying anonymously", ref)
            on_progress(PullEvent(ref, None, RETRY_ANONYMOUSLY, None, None, ""))
        except (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
        ) as exc:
            if _is_stall(exc):
                reason = f"no progress from the engine for {stall_timeout:g} s"
                raise PullFailed(
                    f"pull of image {ref} stalled: {reason}; the registry may "
                    f"be unreachable or very slow",
                    phase="pull_timeout",
                    reason=reason,
                ) from exc
            if is_engine_unreachable(exc):
                raise engine_unavailable(exc) from exc
            raise PullFailed(
                f"pull of image {ref} failed: {one_line(exc)}; it will be tried again",
                phase="pull_failed",
                reason=one_line(exc),
            ) from exc
