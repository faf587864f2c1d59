"""The backend emulator: a stateful stand-in for the Cyberwave cloud.

An HTTP server on loopback that answers the REST calls of protocol.md 1.4
through ``state.Backend``, checks the bearer token, records every API
request, applies injected faults, and reaches the edge through a real MQTT
broker. Tests use it in-process (``Emulator``, or the ``emulator``
fixture); ``scripts/demo`` and end-to-end tests run it as a process
(``python -m tests.emulator``) and steer it over the unauthenticated
control API under ``/_emulator/``.

It is not a model of the real backend beyond the documented contract, and
it must never be exposed beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.emulator.alerts import LIST_SHAPES
from tests.emulator.control import ControlApi
from tests.emulator.faults import Fault, FaultBook, RecordedRequest, Recorder
from tests.emulator.httpserver import TrackingHTTPServer
from tests.emulator.publisher import CommandPublisher
from tests.emulator.state import Backend, Reply

_log = logging.getLogger(__name__)

DEFAULT_TOKEN = "cw_emulator_token"
CONTROL_PREFIX = "/_emulator/"
EXAMPLE_ENVIRONMENT = Path(__file__).parent / "data" / "example-environment.json"


def read_example_environment() -> dict[str, Any]:
    """The example environment fixture, with ``<FP>`` placeholders intact."""
    data: dict[str, Any] = json.loads(EXAMPLE_ENVIRONMENT.read_text())
    return data


class Emulator:
    """One emulated backend on ``http://127.0.0.1:<port>``."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.backend = Backend(tokens=tokens)
        self.recorder = Recorder()
        self.faults = FaultBook()
        self._publisher: CommandPublisher | None = None
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        self._control = ControlApi(self)

    # -- lifecycle -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the emulator listens on."""
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """The base URL to give the edge core (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The first accepted API token."""
        return self.backend.tokens[0]

    def start(self) -> Emulator:
        """Serve in a background thread."""
        self._server.start_serving("emulator")
        return self

    def stop(self) -> None:
        """Stop serving, release hung requests and close open connections."""
        self.faults.clear()
        self._server.stop_serving()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state helpers -----------------------------------------------------------

    def load_environment(
        self, fixture: Mapping[str, Any], fingerprint: str
    ) -> dict[str, Any]:
        """Add an environment (example-environment.json format) for ``fingerprint``."""
        return self.backend.load_environment(fixture, fingerprint)

    def load_example_environment(self, fingerprint: str) -> dict[str, Any]:
        """Add the example environment, linked to ``fingerprint``."""
        return self.load_environment(read_example_environment(), fingerprint)

    @property
    def twins(self) -> dict[str, dict[str, Any]]:
        """Copies of every twin, by uuid."""
        twins: dict[str, dict[str, Any]] = self.backend.snapshot("twins")
        return twins

    @property
    def edges(self) -> dict[str, dict[str, Any]]:
        """Copies of every registered edge, by uuid."""
        edges: dict[str, dict[str, Any]] = self.backend.snapshot("edges")
        return edges

    @property
    def assets(self) -> dict[str, dict[str, Any]]:
        """Copies of every asset, by uuid."""
        assets: dict[str, dict[str, Any]] = self.backend.snapshot("assets")
        return assets

    def alerts(
        self,
        *,
        twin_uuid: str | None = None,
        alert_type: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of the alerts, oldest first, optionally filtered."""
        alerts: dict[str, dict[str, Any]] = self.backend.snapshot("alerts")
        wanted = {"twin_uuid": twin_uuid, "alert_type": alert_type, "status": status}
        return [
            alert
            for alert in alerts.values()
            if all(
                value is None or alert.get(key) == value
                for key, value in wanted.items()
            )
        ]

    def edge_by_fingerprint(self, fingerprint: str) -> dict[str, Any] | None:
        """The registered edge with this fingerprint, if any."""
        return self.backend.edge_by_fingerprint(fingerprint)

    def put_mlmodel(
        self, model: Mapping[str, Any], *, weights: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add or replace a catalog model; ``weights`` is its /weights answer.

        Without ``weights`` the model is not hosted (/weights answers 404).
        """
        return self.backend.put_mlmodel(model, weights=weights)

    def remove_mlmodel(self, model_uuid: str) -> None:
        """Take a model out of the catalog."""
        self.backend.remove_mlmodel(model_uuid)

    def edit_twin(self, twin_uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change a twin on the backend side, as the web UI would."""
        return self.backend.edit_twin(twin_uuid, fields)

    def set_tokens(self, tokens: Iterable[str]) -> None:
        """Accept exactly these tokens from now on (token rotation)."""
        self.backend.tokens = list(tokens)

    def configure(
        self,
        *,
        alert_list_shape: str | None = None,
        require_workspace: bool | None = None,
    ) -> None:
        """Change how lists of alerts look and whether workspace_uuid is required."""
        if alert_list_shape is not None:
            if alert_list_shape not in LIST_SHAPES:
                raise ValueError(f"alert_list_shape must be one of {LIST_SHAPES}")
            self.backend.alerts.list_shape = alert_list_shape
        if require_workspace is not None:
            self.backend.require_workspace = require_workspace

    # -- requests and faults -----------------------------------------------------

    def requests(
        self, method: str | None = None, path_regex: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded API requests, oldest first."""
        return self.recorder.find(method, path_regex)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self.recorder.clear()

    def fault(
        self,
        path_regex: str,
        *,
        method: str | None = None,
        status: int | None = None,
        body: Any = None,
        times: int | None = None,
        delay: float = 0.0,
        hang: bool = False,
        drop: bool = False,
    ) -> Fault:
        """Make matching API requests misbehave (see ``faults.Fault``)."""
        return self.faults.add(
            Fault(
                path_regex=path_regex,
                method=method,
                status=status,
                body=body,
                times=times,
                delay=delay,
                hang=hang,
                drop=drop,
            )
        )

    def remove_fault(self, fault: Fault) -> bool:
        """Deactivate one fault; requests it holds hung stay hung."""
        return self.faults.remove(fault.id)

    def clear_faults(self) -> None:
        """Remove every fault and let hung requests go on."""
        self.faults.clear()

    # -- MQTT ----------------------------------------------------------------------

    def use_broker(
        self,
        host: str,
        port: int,
        *,
        ca_cert: str | None = None,
        topic_prefix: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """Publish commands through this broker."""
        self._publisher = CommandPublisher(
            host=host, port=port, ca_cert=ca_cert, username=username, password=password
        )
        self.backend.publisher = self._publisher
        if topic_prefix is not None:
            self.backend.topic_prefix = topic_prefix

    def publish_command(
        self,
        command: str,
        *,
        edge_uuid: str | None = None,
        twin_uuid: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Publish a command to an edge or a twin; returns the payload sent."""
        payload = {"command": command, **fields}
        if (edge_uuid is None) == (twin_uuid is None):
            raise ValueError("give exactly one of edge_uuid and twin_uuid")
        if edge_uuid is not None:
            self.backend.publish_edge_command(edge_uuid, payload)
        else:
            assert twin_uuid is not None
            self.backend.publish_twin_command(twin_uuid, payload)
        return payload

    def restart_core(self, edge_uuid: str) -> Reply:
        """What the web UI's "restart edge core" does (create alert, publish)."""
        return self.backend.restart_core(edge_uuid)

    def published(self) -> list[tuple[str, dict[str, Any]]]:
        """Every command published so far, as (topic, payload)."""
        return self._publisher.history() if self._publisher else []

    # -- HTTP entry points -------------------------------------------------------

    def handle_control(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> Reply:
        """Answer one ``/_emulator/`` call (see ``control``)."""
        return self._control.handle(method, path[len(CONTROL_PREFIX) :], query, body)


class _Server(TrackingHTTPServer):
    """The emulator's HTTP server."""

    emulator: Emulator


class _Handler(BaseHTTPRequestHandler):
    """Turns one HTTP request into a recorded call, a fault or a backend reply."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this each answer waits
    # for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("emulator: " + format, *args)

    def _handle(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body, invalid = _parse_json(raw)

        if parts.path.startswith(CONTROL_PREFIX):
            reply = (
                Reply(400, {"detail": "JSON parse error"})
                if invalid
                else emulator.handle_control(self.command, parts.path, query, body)
            )
            self._send(reply)
            return

        auth = emulator.backend.authenticate(self.headers.get("Authorization"))
        record = emulator.recorder.add(
            method=self.command,
            path=parts.path,
            query=query,
            headers=dict(self.headers.items()),
            auth=auth,
            body=body if not invalid else raw.decode("utf-8", "replace"),
        )
        fault, release = emulator.faults.take(self.command, parts.path)
        if fault is not None:
            if fault.delay:
                release.wait(fault.delay)
            if fault.hang:
                release.wait()
            if fault.drop:
                self._drop()
                return
            if fault.status is not None:
                detail = fault.body
                if detail is None:
                    detail = {"detail": f"injected fault: HTTP {fault.status}"}
                record.status = fault.status
                self._send(Reply(fault.status, detail))
                return

        if invalid:
            reply = Reply(400, {"detail": "JSON parse error"})
        else:
            reply = emulator.backend.dispatch(
                self.command, parts.path, query, body, auth
            )
        record.status = reply.status
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if isinstance(reply.body, bytes):
            # A fault's raw bytes (an empty or HTML error page) go out as they are.
            data = reply.body
        else:
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client gave up (a timeout test); nobody is left to answer.
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    """(parsed body or None, True when the body was not valid JSON)."""
    if not raw.strip():
        return None, False
    try:
        return json.loads(raw), False
    except (UnicodeDecodeError, ValueError):
        return None, True
