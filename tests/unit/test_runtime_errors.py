"""Translating docker SDK and transport errors into the project's errors."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from edge_core.errors import (
    ContainerError,
    EdgeCoreError,
    PermanentError,
    RuntimeUnavailable,
)
from edge_core.runtime.errors import (
    PRIVILEGED_FIX,
    ForeignContainerError,
    translate_errors,
)


def api_error(status: int, message: str, cls: type[APIError] = APIError) -> APIError:
    response = requests.Response()
    response.status_code = status
    return cls("server error", response=response, explanation=message)


def translated(error: Exception, action: str = "act", **kwargs: Any) -> EdgeCoreError:
    """The project error that ``error`` becomes inside ``translate_errors``."""
    kwargs.setdefault("phase", "docker_error")
    with pytest.raises(EdgeCoreError) as caught, translate_errors(action, **kwargs):
        raise error
    return caught.value


def test_refusal_becomes_container_error_with_phase() -> None:
    """An API refusal keeps the engine's words and gets the given phase."""
    error = translated(
        api_error(400, "invalid mount config"),
        "create container x",
        phase="docker_create_failed",
    )
    assert isinstance(error, ContainerError)
    assert error.phase == "docker_create_failed"
    assert "create container x failed: invalid mount config" in str(error)


def test_missing_image_is_image_missing() -> None:
    """ImageNotFound always maps to the image_missing phase."""
    error = translated(
        api_error(404, "No such image: a:b", ImageNotFound),
        phase="docker_create_failed",
    )
    assert isinstance(error, ContainerError)
    assert error.phase == "image_missing"


def test_unreachable_engine_is_runtime_unavailable_with_fix() -> None:
    """A connection error says the engine is unreachable and how to start it."""
    error = translated(requests.exceptions.ConnectionError("Connection refused"))
    assert isinstance(error, RuntimeUnavailable)
    assert "sudo systemctl start docker" in str(error)
    assert error.retry_after


def test_sdk_connection_failure_is_runtime_unavailable() -> None:
    """The SDK's own "error while fetching server API version" is unreachable."""
    error = translated(DockerException("Error while fetching server API version: x"))
    assert isinstance(error, RuntimeUnavailable)


def test_read_timeout_uses_the_timeout_phase() -> None:
    """An engine that does not answer in time gives the timeout phase."""
    error = translated(
        requests.exceptions.ReadTimeout("read timed out"),
        phase="docker_create_failed",
        timeout_phase="docker_create_timeout",
    )
    assert isinstance(error, ContainerError)
    assert error.phase == "docker_create_timeout"


def test_privileged_refusal_names_the_setting() -> None:
    """A capabilities refusal of a privileged container names the fix."""
    message = "OCI runtime create failed: unable to apply caps: operation not permitted"
    error = translated(api_error(500, message), privileged=True)
    assert PRIVILEGED_FIX in str(error)


def test_same_refusal_without_privileged_does_not_blame_the_setting() -> None:
    """The privileged fix is only suggested for privileged containers."""
    error = translated(api_error(500, "unable to apply caps: operation not permitted"))
    assert isinstance(error, ContainerError)
    assert PRIVILEGED_FIX not in str(error)


def test_not_found_during_an_action_is_a_container_error() -> None:
    """A container that vanished mid-action is reported, not crashed on."""
    error = translated(api_error(404, "No such container: x", NotFound))
    assert isinstance(error, ContainerError)
    assert "removed meanwhile" in str(error)


def test_foreign_container_error_is_permanent_and_names_both_owners() -> None:
    """The refusal is permanent and names the container and both fingerprints."""
    error = ForeignContainerError("cw-x", "other-fp", "my-fp")
    assert isinstance(error, PermanentError)
    assert "cw-x" in str(error)
    assert "other-fp" in str(error)
    assert "my-fp" in str(error)
