"""How CloudClient turns HTTP answers and transport failures into errors.

These drive the client through httpx's MockTransport, the transport hook
the client exposes, so each status and failure is produced exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from edge_core.cloud.rest import CloudClient
from edge_core.errors import (
    AuthError,
    BackendUnavailable,
    NotFoundError,
    PermanentError,
    TemporaryError,
)

TOKEN = "cw_secret_token_value"


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    sleeps: list[float] | None = None,
    **options: object,
) -> CloudClient:
    recorded = sleeps if sleeps is not None else []
    return CloudClient(
        base_url="https://api.example.test/",
        token=lambda: TOKEN,
        version="1.2.3",
        transport=httpx.MockTransport(handler),
        sleep=recorded.append,
        backoff_initial=0.5,
        backoff_max=8.0,
        **options,  # type: ignore[arg-type]
    )


def answer(
    status: int, body: object = None, **headers: str
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses_raise_auth_error(status: int) -> None:
    """401 and 403 become AuthError, a PermanentError."""
    client = make_client(answer(status, {"detail": "Invalid token."}))
    with pytest.raises(AuthError) as caught:
        client.check_token()
    assert isinstance(caught.value, PermanentError)
    assert f"HTTP {status}" in str(caught.value)
    assert "Invalid token." in str(caught.value)


def test_not_found_raises_not_found_error() -> None:
    """404 becomes NotFoundError naming the call."""
    client = make_client(answer(404, {"detail": "Twin not found."}))
    with pytest.raises(NotFoundError, match=r"GET /api/v1/twins/t1: HTTP 404"):
        client.get_twin("t1")


def test_other_client_error_names_method_path_status_and_detail() -> None:
    """A 400 is a PermanentError whose message carries the backend's detail."""
    client = make_client(answer(400, {"detail": "severity: must be one of info"}))
    with pytest.raises(PermanentError) as caught:
        client.update_alert("a1", {"severity": "loud"})
    message = str(caught.value)
    assert "PUT /api/v1/alerts/a1" in message
    assert "HTTP 400" in message
    assert "severity: must be one of info" in message
    assert not isinstance(caught.value, (AuthError, NotFoundError))


def test_field_errors_without_detail_are_shown_as_json() -> None:
    """A DRF-style field error object is reported compactly."""
    client = make_client(answer(400, {"fingerprint": ["This field is required."]}))
    with pytest.raises(
        PermanentError, match=r'\{"fingerprint":\["This field is required."\]\}'
    ):
        client.register_edge("")


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_are_temporary_and_say_will_retry(status: int) -> None:
    """5xx, 408 and 429 become BackendUnavailable (a TemporaryError)."""
    client = make_client(answer(status, {"detail": "busy"}), retries=0)
    with pytest.raises(BackendUnavailable) as caught:
        client.list_edges()
    assert isinstance(caught.value, TemporaryError)
    assert f"GET /api/v1/edges answered HTTP {status}" in str(caught.value)
    assert "will retry" in str(caught.value)


def test_connection_error_is_backend_unavailable() -> None:
    """A refused connection becomes BackendUnavailable naming the call."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = make_client(refuse, retries=0)
    with pytest.raises(BackendUnavailable, match=r"GET /api/v1/edges could not reach"):
        client.list_edges()


def test_timeout_is_backend_unavailable() -> None:
    """A read timeout becomes BackendUnavailable saying it timed out."""

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = make_client(slow, retries=0)
    with pytest.raises(
        BackendUnavailable, match=r"timed out \(ReadTimeout\); will retry"
    ):
        client.get_edge("e1")


def test_body_that_is_not_json_is_temporary() -> None:
    """A 200 with an HTML page (a captive portal) is not accepted as data."""
    client = make_client(
        lambda request: httpx.Response(200, text="<html>login</html>"), retries=0
    )
    with pytest.raises(BackendUnavailable, match="not JSON"):
        client.get_edge("e1")


def test_wrong_shape_is_temporary() -> None:
    """An object where a list is expected raises instead of crashing later."""
    client = make_client(answer(200, {"unexpected": True}), retries=0)
    with pytest.raises(BackendUnavailable, match="where a list was expected"):
        client.list_edges()


def test_token_never_appears_in_error_messages() -> None:
    """A backend echoing the token in its detail does not leak it."""
    client = make_client(answer(401, {"detail": f"token {TOKEN} is revoked"}))
    with pytest.raises(AuthError) as caught:
        client.check_token()
    assert TOKEN not in str(caught.value)
    assert "<token>" in str(caught.value)


def test_retry_after_header_sets_the_delay() -> None:
    """A 429 with Retry-After waits that long (capped) before the retry."""
    sleeps: list[float] = []
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json=[]),
        ]
    )
    client = make_client(lambda request: next(answers), sleeps, retries=1)
    assert client.list_edges() == []
    assert sleeps == [3.0]


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    """Each retry waits between half and all of min(max, initial × 2^n)."""
    sleeps: list[float] = []
    client = make_client(answer(503), sleeps, retries=6)
    with pytest.raises(BackendUnavailable):
        client.get_twin("t1")
    caps = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(sleeps) == len(caps)
    for slept, cap in zip(sleeps, caps, strict=True):
        assert cap / 2 <= slept <= cap


def test_list_answers_accept_bare_arrays_and_pages() -> None:
    """A bare array, a results page and an items page all give the list."""
    row = {"uuid": "a1", "alert_type": "x"}
    for body in ([row], {"results": [row], "count": 1}, {"items": [row]}):
        client = make_client(answer(200, body))
        assert client.list_active_alerts("t1") == [row]


def test_edge_registration_accepts_200_and_201() -> None:
    """Both 200 and 201 answers to POST /edges return the Edge object."""
    for status in (200, 201):
        client = make_client(answer(status, {"uuid": "e1", "fingerprint": "fp"}))
        assert client.register_edge("fp")["uuid"] == "e1"


def test_user_agent_and_prefix() -> None:
    """User-Agent is cyberwave-edge-core/<version>, after the configured prefix."""
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    make_client(capture).list_edges()
    make_client(capture, user_agent_prefix="fleet-tool/2").list_edges()
    assert seen[0].headers["User-Agent"] == "cyberwave-edge-core/1.2.3"
    assert seen[1].headers["User-Agent"] == "fleet-tool/2 cyberwave-edge-core/1.2.3"
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert str(seen[0].url) == "https://api.example.test/api/v1/edges"
