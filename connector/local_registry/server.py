"""The registry's HTTP API: Confluent's paths, content type and error codes, served by a
thread (``LocalSchemaRegistry``), with the test hooks (basic auth, TLS, injected faults)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from connector.embedded import free_port
from connector.local_registry.store import SCHEMA_TYPES, RegistryError, SchemaStore

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), name)
    for m, p, name in (
        ("GET", r"/schemas/ids/(\d+)", "schema"),
        ("GET", r"/schemas/ids/(\d+)/schema", "schema_text"),
        ("GET", r"/schemas/ids/(\d+)/subjects", "id_subjects"),
        ("GET", r"/schemas/ids/(\d+)/versions", "id_versions"),
        ("GET", r"/schemas/types", "types"),
        ("GET", r"/subjects", "subjects"),
        ("GET", r"/subjects/([^/]+)/versions", "versions"),
        ("GET", r"/subjects/([^/]+)/versions/([^/]+)", "version"),
        ("GET", r"/subjects/([^/]+)/versions/([^/]+)/schema", "version_text"),
        ("GET", r"/config", "config"),
        ("GET", r"/config/([^/]+)", "config"),
        ("GET", r"/", "root"),
        ("POST", r"/subjects/([^/]+)/versions", "register"),
        ("POST", r"/subjects/([^/]+)", "lookup"),
    )
]


class LocalSchemaRegistry:
    """The registry on ``127.0.0.1:port`` (a free one by default), served by a thread.

    ``stop()`` closes the listening socket (clients get *connection refused*, as from a
    registry that is down) and ``start()`` serves again on the same port with the same
    schemas.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        basic_auth: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self._tls = tls
        self._authorization = (
            None
            if basic_auth is None
            else "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
        )
        self.port = port or free_port()
        self.store = SchemaStore()
        self.requests = 0
        self._fault: tuple[int, int] = (0, 0)  # (status, requests left)
        self._fault_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.connections: set[socket.socket] = set()  # open keep-alive connections

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._server is None:
            self._server = ThreadingHTTPServer((self.host, self.port), _handler(self))
            self._server.daemon_threads = True
            if self._tls is not None:
                self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() returns within 50 ms
                name="schema-registry",
                daemon=True,
            ).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (a keep-alive client must not go on
        being served by a registry that is down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def fail_next(self, requests: int, status: int = 503) -> None:
        """Answer the next ``requests`` requests with ``status`` (error code 50001 and up)."""
        with self._fault_lock:
            self._fault = (status, requests)

    def _take_fault(self) -> int | None:
        with self._fault_lock:
            self.requests += 1
            status, left = self._fault
            if not left:
                return None
            self._fault = (status, left - 1)
            return status

    def dispatch(
        self, method: str, path: str, body: bytes, authorization: str | None = None
    ) -> tuple[int, Any]:
        """One request → (status, JSON answer)."""
        if self._authorization is not None and authorization != self._authorization:
            return 401, {"error_code": 40101, "message": "Unauthorized"}
        status = self._take_fault()
        if status is not None:
            return status, {"error_code": status * 100 + 1, "message": "injected fault"}
        path = urlsplit(path).path.rstrip("/") or "/"
        for m, pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if m == method and match:
                args = [unquote(a) for a in match.groups()]
                try:
                    return 200, self._answer(name, args, body)
                except RegistryError as exc:
                    return exc.status, {"error_code": exc.code, "message": str(exc)}
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _answer(self, name: str, args: list[str], body: bytes) -> Any:
        store = self.store
        if name in ("register", "lookup"):
            try:
                doc = json.loads(body or b"{}")
            except ValueError as exc:
                raise RegistryError(400, 400, f"Unexpected character: {exc}") from exc
            if not isinstance(doc, dict):
                raise RegistryError(422, 42201, "Invalid schema: expected an object")
            if name == "lookup":
                return store.lookup(args[0], doc)
            registered = store.register(args[0], doc)
            return {"id": registered["id"], "version": registered["version"]}
        if name == "schema":
            return store.schema(int(args[0]))
        if name == "schema_text":
            return json.loads(store.schema(int(args[0]))["schema"])
        if name == "id_subjects":
            return [s["subject"] for s in store.subjects_of(int(args[0]))]
        if name == "id_versions":
            return store.subjects_of(int(args[0]))
        if name == "types":
            return list(SCHEMA_TYPES)
        if name == "subjects":
            return store.subjects()
        if name == "versions":
            return store.versions(args[0])
        if name == "version":
            return store.version(args[0], args[1])
        if name == "version_text":
            return json.loads(store.version(args[0], args[1])["schema"])
        if name == "config":
            return {"compatibilityLevel": "NONE"}
        return {}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _handler(registry: LocalSchemaRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            registry.connections.add(self.connection)

        def finish(self) -> None:
            registry.connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization")
            status, answer = registry.dispatch(method, self.path, body, auth)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler
