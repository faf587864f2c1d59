"""A real image registry on loopback, and a registry that never answers.

``LocalRegistry`` runs the distribution registry (``docker-registry``)
with file-system storage in a temporary directory on a free
``127.0.0.1`` port. The Docker engine treats 127.0.0.0/8 registries as
insecure-allowed, so tests can push to it and really pull from it.

``StalledRegistry`` accepts TCP connections and never sends a byte, which
is how a hung registry looks to the engine. ``TokenAuthProxy`` puts token
authentication in front of a ``LocalRegistry`` that refuses every
credential but lets anonymous pulls through.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import httpx

from tests.support.ports import free_port

REGISTRY_BINARY = "/usr/bin/docker-registry"

_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: cw-test-secret
"""


class LocalRegistry:
    """One ``docker-registry serve`` process with its own storage."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "registry.log"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, the prefix of image references."""
        return f"127.0.0.1:{self.port}"

    def ref(self, repository: str, tag: str) -> str:
        """The full reference of ``repository:tag`` in this registry."""
        return f"{self.address}/{repository}:{tag}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the registry and wait until it answers ``/v2/``."""
        binary = shutil.which(REGISTRY_BINARY) or shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError(
                "docker-registry is not installed; run scripts/setup-host"
            )
        root = self._workdir / "storage"
        root.mkdir(parents=True, exist_ok=True)
        config = self._workdir / "config.yml"
        config.write_text(_CONFIG.format(root=root, port=self.port))
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                if (
                    httpx.get(f"http://{self.address}/v2/", timeout=1).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(
            f"docker-registry did not come up on {self.address}: "
            f"{self._log.read_text(errors='replace')[-2000:]}"
        )

    def stop(self) -> None:
        """Stop the registry process (its storage stays)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def push(
        self, client: docker.DockerClient, image: str, repository: str, tag: str
    ) -> str:
        """Push local ``image`` as ``repository:tag``; return the full reference.

        The temporary local tag is removed again, the image itself stays.
        """
        target = self.ref(repository, tag)
        client.api.tag(image, f"{self.address}/{repository}", tag)
        try:
            for message in client.api.push(
                f"{self.address}/{repository}", tag=tag, stream=True, decode=True
            ):
                error = _error(message)
                if error:
                    raise RuntimeError(f"push of {target} failed: {error}")
        finally:
            client.api.remove_image(target, noprune=True)
        return target


def _error(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    detail = message.get("errorDetail") or {}
    return message.get("error") or detail.get("message")


class StalledRegistry:
    """A TCP server on loopback that accepts connections and stays silent."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(16)
        # accept() is not interrupted by close(); poll a stop flag instead.
        self._server.settimeout(0.05)
        self._stopping = threading.Event()
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, the prefix of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return len(self._clients)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._clients.append(client)

    def close(self) -> None:
        """Stop accepting and drop every held connection."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self._server.close()
        with self._lock:
            for client in self._clients:
                client.close()


_UNAUTHORIZED_BODY = json.dumps(
    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
).encode()


class TokenAuthProxy:
    """A token-auth front for a ``LocalRegistry`` that refuses any credentials.

    The engine is sent to ``/token`` by a Bearer challenge. A token request
    that carries credentials gets "401 incorrect username or password"; an
    anonymous one gets a token, and requests with it are passed through to
    the registry. So a pull with stored (wrong) credentials fails and the
    same pull done anonymously succeeds.
    """

    def __init__(self, upstream: LocalRegistry) -> None:
        self.port = free_port()
        self.token_requests: list[bool] = []
        self._upstream = f"http://{upstream.address}"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, the prefix of image references."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _token(self) -> None:
                with_credentials = "Authorization" in self.headers
                proxy.token_requests.append(with_credentials)
                if with_credentials:
                    body = json.dumps(
                        {
                            "errors": [
                                {
                                    "code": "UNAUTHORIZED",
                                    "message": "incorrect username or password",
                                }
                            ]
                        }
                    )
                    self._send(401, body.encode(), {"Content-Type": "application/json"})
                    return
                body = json.dumps({"token": "anonymous", "access_token": "anonymous"})
                self._send(200, body.encode(), {"Content-Type": "application/json"})

            def _forward(self) -> None:
                if self.path.startswith("/token"):
                    self._token()
                    return
                if self.headers.get("Authorization") != "Bearer anonymous":
                    challenge = (
                        f'Bearer realm="http://{proxy.address}/token",service="cw-test"'
                    )
                    self._send(
                        401,
                        _UNAUTHORIZED_BODY,
                        {
                            "Content-Type": "application/json",
                            "WWW-Authenticate": challenge,
                            "Docker-Distribution-API-Version": "registry/2.0",
                        },
                    )
                    return
                headers = {"Accept": ", ".join(self.headers.get_all("Accept") or [])}
                if self.headers.get("Range"):
                    headers["Range"] = self.headers["Range"]
                response = httpx.request(
                    self.command,
                    proxy._upstream + self.path,
                    headers=headers,
                    timeout=30,
                )
                passed = {
                    k: v
                    for k, v in response.headers.items()
                    if k.lower()
                    in (
                        "content-type",
                        "docker-content-digest",
                        "docker-distribution-api-version",
                        "etag",
                    )
                }
                self._send(response.status_code, response.content, passed)

            do_GET = _forward
            do_HEAD = _forward

        return Handler
