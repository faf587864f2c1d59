"""REST client for the Cyberwave backend: one method per endpoint.

Every other module reaches the backend through ``CloudClient``, so the
bearer token, workspace scoping, timeouts, retries and the translation of
HTTP failures into the project's error vocabulary live in one place
(protocol.md 1.1–1.4, 7b items 13 and 20). The resource calls R1–R14 are
scoped to the workspace and retried; the mlmodels calls (R16, R17) are
"minimal" (1.2): no workspace parameter, no retry, and a timeout chosen by
the caller for each call (1.3).

It deliberately does not decide what the answers mean (registration at
boot, twin sync, the alert lifecycle and the model cache live above it)
and caches nothing.

Every method raises only these::

    EdgeCoreError
    ├── PermanentError          any other 4xx: the request itself is wrong
    │   ├── AuthError           401/403 (after one token re-read on a 401)
    │   └── NotFoundError       404
    └── TemporaryError
        └── BackendUnavailable  connection error, timeout, 408/429 or 5xx,
                                or an answer that is not the expected JSON;
                                idempotent calls are retried first
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from edge_core.backoff import MAX_EXPONENT
from edge_core.errors import (
    AuthError,
    BackendUnavailable,
    NotFoundError,
    PermanentError,
)

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

# protocol.md 1.7: the only top-level twin fields a push may carry.
TWIN_PUSH_FIELDS: frozenset[str] = frozenset(
    {
        "name",
        "description",
        "position_x",
        "position_y",
        "position_z",
        "rotation_w",
        "rotation_x",
        "rotation_y",
        "rotation_z",
        "scale_x",
        "scale_y",
        "scale_z",
        "kinematics_override",
        "joint_calibration",
        "metadata",
        "controller_policy_uuid",
        "attach_to_twin_uuid",
        "attach_to_link",
        "attach_offset_x",
        "attach_offset_y",
        "attach_offset_z",
        "attach_offset_rotation_w",
        "attach_offset_rotation_x",
        "attach_offset_rotation_y",
        "attach_offset_rotation_z",
        "fixed_base",
    }
)

# protocol.md 1.4 (R13): the keys an alert update may change.
ALERT_UPDATE_FIELDS: frozenset[str] = frozenset(
    {
        "name",
        "description",
        "media",
        "alert_type",
        "severity",
        "status",
        "category",
        "metadata",
    }
)

_TEMPORARY_STATUSES = frozenset({408, 429})
_DETAIL_LIMIT = 300
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


@dataclass(frozen=True)
class _Call:
    """One REST call: what to send and whether it may be repeated safely."""

    method: str
    path: str
    retry: bool
    params: tuple[tuple[str, str], ...] = ()
    body: Any = None
    minimal: bool = False
    """R15–R17: no workspace parameter is added (protocol.md 1.2)."""
    timeout: float | None = None
    """Seconds for this call; None uses the client's timeout."""

    @property
    def label(self) -> str:
        return f"{self.method} {API_PREFIX}{self.path}"


class CloudClient:
    """Talks to the Cyberwave REST API with the edge's API token.

    ``token`` is called for every request; ``reload_token`` (when given)
    re-reads the token from disk after a 401, and the request is repeated
    once if the token changed. Safe to share between a few threads.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: Callable[[], str],
        reload_token: Callable[[], str] | None = None,
        timeout: float | None = 10.0,
        retries: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        workspace_id: str | None = None,
        user_agent_prefix: str | None = None,
        version: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base_url = base_url.strip().rstrip("/")
        self._token = token
        self._reload_token = reload_token
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff_initial = max(0.0, backoff_initial)
        self._backoff_max = max(self._backoff_initial, backoff_max)
        self._workspace_id = workspace_id or None
        self._sleep = sleep
        user_agent = f"cyberwave-edge-core/{version}"
        if user_agent_prefix:
            user_agent = f"{user_agent_prefix.strip()} {user_agent}"
        self._http = httpx.Client(
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    # -- lifecycle ---------------------------------------------------------

    def set_timeout(self, seconds: float | None) -> None:
        """Use ``seconds`` per attempt from now on (None: no timeout)."""
        self._timeout = seconds

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- endpoints ---------------------------------------------------------

    def check_token(self) -> None:
        """R1: succeed when the backend accepts the token."""
        self._request(_Call("GET", "/users/workspaces", retry=True))

    def register_edge(self, fingerprint: str) -> dict[str, Any]:
        """R2: create or fetch this edge; 200 and 201 both succeed."""
        call = _Call("POST", "/edges", retry=True, body={"fingerprint": fingerprint})
        return _object(call, self._request(call))

    def list_edges(self) -> list[dict[str, Any]]:
        """R3: every edge the token can see."""
        call = _Call("GET", "/edges", retry=True)
        return _objects(call, self._request(call))

    def get_edge(self, edge_uuid: str) -> dict[str, Any]:
        """R4: one edge object."""
        call = _Call("GET", f"/edges/{_seg(edge_uuid)}", retry=True)
        return _object(call, self._request(call))

    def discover(
        self,
        *,
        fingerprint: str,
        hostname: str,
        platform: str,
        host_facts: Mapping[str, Any],
    ) -> dict[str, Any]:
        """R5: report liveness and host facts; empty strings are left out."""
        body: dict[str, Any] = {
            key: value
            for key, value in (
                ("fingerprint", fingerprint),
                ("hostname", hostname),
                ("platform", platform),
            )
            if value != ""
        }
        body["host_facts"] = dict(host_facts)
        call = _Call("POST", "/edges/discover", retry=True, body=body)
        return _object(call, self._request(call), allow_empty=True)

    def environment_twins(self, environment_uuid: str) -> list[dict[str, Any]]:
        """R6: the twins of one environment."""
        path = f"/environments/{_seg(environment_uuid)}/twins"
        call = _Call("GET", path, retry=True)
        return _objects(call, self._request(call))

    def get_twin(self, twin_uuid: str) -> dict[str, Any]:
        """R7: one twin object."""
        call = _Call("GET", f"/twins/{_seg(twin_uuid)}", retry=True)
        return _object(call, self._request(call))

    def update_twin(self, twin_uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """R8: push the allowed-field subset of ``fields`` (protocol.md 1.7).

        Keys outside ``TWIN_PUSH_FIELDS`` are never sent.
        """
        body = {key: value for key, value in fields.items() if key in TWIN_PUSH_FIELDS}
        dropped = sorted(set(fields) - TWIN_PUSH_FIELDS)
        if dropped:
            _log.debug("twin %s push leaves out %s", twin_uuid, ", ".join(dropped))
        call = _Call("PUT", f"/twins/{_seg(twin_uuid)}", retry=True, body=body)
        return _object(call, self._request(call), allow_empty=True)

    def get_asset(self, asset_uuid: str) -> dict[str, Any]:
        """R9: one asset object."""
        call = _Call("GET", f"/assets/{_seg(asset_uuid)}", retry=True)
        return _object(call, self._request(call))

    def create_alert(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """R10: create (or, without ``force``, dedupe onto) an alert.

        Never retried: a repeated POST could raise the alert twice.
        """
        body = dict(payload)
        if self._workspace_id and "workspace_uuid" not in body:
            body["workspace_uuid"] = self._workspace_id
        call = _Call("POST", "/alerts", retry=False, body=body)
        return _object(call, self._request(call))

    def list_active_alerts(self, twin_uuid: str) -> list[dict[str, Any]]:
        """R11: the active alerts of one twin (bare list or paginated object)."""
        params = (("twin_uuid", twin_uuid), ("limit", "100"), ("status", "active"))
        call = _Call("GET", "/alerts", retry=True, params=params)
        return _objects(call, self._request(call))

    def get_alert(self, alert_uuid: str) -> dict[str, Any]:
        """R12: one alert object."""
        call = _Call("GET", f"/alerts/{_seg(alert_uuid)}", retry=True)
        return _object(call, self._request(call))

    def update_alert(
        self, alert_uuid: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """R13: change only the given keys among ``ALERT_UPDATE_FIELDS``."""
        body = {
            key: value for key, value in fields.items() if key in ALERT_UPDATE_FIELDS
        }
        call = _Call("PUT", f"/alerts/{_seg(alert_uuid)}", retry=True, body=body)
        return _object(call, self._request(call), allow_empty=True)

    def resolve_alert(self, alert_uuid: str) -> dict[str, Any]:
        """R14: resolve one alert (no body)."""
        call = _Call("POST", f"/alerts/{_seg(alert_uuid)}/resolve", retry=False)
        return _object(call, self._request(call), allow_empty=True)

    def get_mlmodel(self, model_id: str, *, timeout: float) -> dict[str, Any]:
        """R16: the catalog object of one model, within ``timeout`` seconds.

        A canonical UUID is fetched as ``/mlmodels/{uuid}``, any other id
        as ``/mlmodels?model_external_id=<id>``; a list answer (bare or
        paginated) gives its first element, and an empty one raises
        ``NotFoundError``. Never retried.
        """
        params: tuple[tuple[str, str], ...] = ()
        if _CANONICAL_UUID.fullmatch(model_id.strip()):
            path = f"/mlmodels/{_seg(model_id.strip().lower())}"
        else:
            path, params = "/mlmodels", (("model_external_id", model_id),)
        call = _Call(
            "GET", path, retry=False, params=params, minimal=True, timeout=timeout
        )
        data = self._request(call)
        if isinstance(data, dict) and not _is_page(data):
            return data
        items = _objects(call, data)
        if not items:
            raise NotFoundError(f"{call.label}: no model {model_id!r} in the catalog")
        return items[0]

    def get_mlmodel_weights(self, model_uuid: str, *, timeout: float) -> dict[str, Any]:
        """R17: where the Cyberwave-hosted weights of a model are.

        ``NotFoundError`` (404) means the model is not hosted. Never retried.
        """
        path = f"/mlmodels/{_seg(model_uuid)}/weights"
        call = _Call("GET", path, retry=False, minimal=True, timeout=timeout)
        return _object(call, self._request(call))

    # -- transport ---------------------------------------------------------

    def _request(self, call: _Call) -> Any:
        """Send ``call``, retrying temporary failures of idempotent calls."""
        attempt = 0
        while True:
            try:
                return _decode(call, self._send_authorized(call))
            except BackendUnavailable as exc:
                if not call.retry or attempt >= self._retries:
                    raise
                attempt += 1
                self._sleep(self._retry_delay(attempt, exc.retry_after))

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(0.0, retry_after), self._backoff_max)
        exponent = min(attempt - 1, MAX_EXPONENT)
        capped = min(self._backoff_max, self._backoff_initial * 2.0**exponent)
        # Equal jitter: many edges failing together do not retry in lockstep.
        return capped / 2 + random.uniform(0.0, capped / 2)

    def _send_authorized(self, call: _Call) -> httpx.Response:
        """One attempt; on a 401 re-read the token and repeat once if it changed."""
        token = self._token()
        response = self._send_once(call, token)
        if response.status_code == 401 and self._reload_token is not None:
            fresh = self._reload_token()
            if fresh and fresh != token:
                _log.info(
                    "%s: token rejected; repeating once with the token re-read "
                    "from credentials.json",
                    call.label,
                )
                token = fresh
                response = self._send_once(call, token)
        _raise_for_status(call, response, token)
        return response

    def _send_once(self, call: _Call, token: str) -> httpx.Response:
        params = httpx.QueryParams(list(call.params))
        scoped = self._workspace_id and not call.minimal
        if scoped and "workspace_uuid" not in params:
            params = params.add("workspace_uuid", self._workspace_id)
        timeout = self._timeout if call.timeout is None else call.timeout
        started = time.monotonic()
        outcome = "error"
        try:
            with _transport_errors(call):
                response = self._http.request(
                    call.method,
                    f"{self._base_url}{API_PREFIX}{call.path}",
                    params=params,
                    json=call.body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=httpx.Timeout(timeout),
                )
        except BackendUnavailable as exc:
            outcome = type(exc.__cause__).__name__
            raise
        else:
            outcome = str(response.status_code)
            return response
        finally:
            # The one line per request: method, path, status (or failure), time.
            elapsed = time.monotonic() - started
            _log.debug("%s -> %s in %.3f s", call.label, outcome, elapsed)


# -- the error mapping: every failure of a call is translated here ---------


@contextmanager
def _transport_errors(call: _Call) -> Iterator[None]:
    """Turn httpx transport failures into ``BackendUnavailable``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise BackendUnavailable(
            f"{call.label} timed out ({type(exc).__name__}); will retry"
        ) from exc
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise BackendUnavailable(
            f"{call.label} could not reach the backend ({reason}); will retry"
        ) from exc


def _raise_for_status(call: _Call, response: httpx.Response, token: str) -> None:
    """Raise the project error that matches a non-2xx status."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _detail(response, token)
    if status in (401, 403):
        raise AuthError(
            f"{call.label} was refused with HTTP {status} ({detail}); the API "
            f"token is invalid or lacks access: log in again with "
            f"'cyberwave edge install'"
        )
    if status == 404:
        raise NotFoundError(f"{call.label}: HTTP 404, not found ({detail})")
    if status >= 500 or status in _TEMPORARY_STATUSES:
        raise BackendUnavailable(
            f"{call.label} answered HTTP {status} ({detail}); will retry",
            retry_after=_retry_after(response),
        )
    raise PermanentError(
        f"{call.label} was rejected with HTTP {status}: {detail}; the request "
        f"will not succeed as sent"
    )


def _detail(response: httpx.Response, token: str) -> str:
    """The backend's own explanation, short and without the token."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        for key in ("detail", "message", "error"):
            if data.get(key):
                data = data[key]
                break
    text = data if isinstance(data, str) else response.text
    if data is not None and not isinstance(data, str):
        text = json.dumps(data, separators=(",", ":"), default=str)
    text = " ".join(text.split()) or "no detail"
    if token:
        text = text.replace(token, "<token>")
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 3] + "..."
    return text


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


def _decode(call: _Call, response: httpx.Response) -> Any:
    """The JSON body of a successful answer (None when empty)."""
    if not response.content.strip():
        return None
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendUnavailable(
            f"{call.label} answered HTTP {response.status_code} with a body that "
            f"is not JSON; will retry"
        ) from exc


def _object(call: _Call, data: Any, *, allow_empty: bool = False) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if data is None and allow_empty:
        return {}
    raise BackendUnavailable(
        f"{call.label} answered with {type(data).__name__} where an object was "
        f"expected; will retry"
    )


def _is_page(data: dict[str, Any]) -> bool:
    """Whether ``data`` is a paginated list (``results`` or ``items``)."""
    return any(isinstance(data.get(key), list) for key in ("results", "items"))


def _objects(call: _Call, data: Any) -> list[dict[str, Any]]:
    """A list of objects from a bare array or a ``results``/``items`` page."""
    if isinstance(data, dict):
        for key in ("results", "items"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if isinstance(data, list):
        return [item for item in data if isinstance(item, dict)]
    raise BackendUnavailable(
        f"{call.label} answered with {type(data).__name__} where a list was "
        f"expected; will retry"
    )


def _seg(value: str) -> str:
    """One path segment, quoted so an odd uuid cannot change the path."""
    return quote(value, safe="")
