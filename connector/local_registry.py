"""A small Schema Registry for local use: the demo, the tests, trying the ``avro`` format.

It speaks the part of Confluent Schema Registry's REST API that serializers and
deserializers use, with the same paths, content type and error codes, so Confluent's own
clients (``confluent_kafka.schema_registry``, the Java serdes) work against it unchanged:

* ``POST /subjects/{subject}/versions`` registers a schema (``{"schema", "schemaType",
  "references"}``); the same schema gets the same id everywhere, a subject gets a new version
  only for a new schema.  Avro schemas are checked by parsing them (422 / 42201 otherwise).
* ``POST /subjects/{subject}`` looks a schema up under a subject.
* ``GET /schemas/ids/{id}`` (and ``/subjects``, ``/versions`` of an id), ``GET /subjects``,
  ``GET /subjects/{subject}/versions``, ``GET /subjects/{subject}/versions/{n|latest}``
  (and ``/schema``), ``GET /schemas/types``, ``GET /config``.
* Unknown subject / version / schema: 404 with error codes 40401 / 40402 / 40403.

What it is not: there are no compatibility checks (``/config`` says ``NONE``), no deletes,
and the schemas live in memory only (gone when it stops).  Production runs Confluent's
registry (docker-compose.yml has one).  For tests: ``basic_auth`` (user, password) makes every
request need those HTTP basic credentials (401 / 40101 otherwise); ``tls`` (a server-side
``ssl.SSLContext``) serves HTTPS, with client certificates if the context asks; ``fail_next``
makes the next requests answer with an error status, a registry that is down or overloaded.
"""

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

import fastavro
from fastavro.schema import SchemaParseException

from connector.embedded import free_port

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")


class RegistryError(Exception):
    """An error answer: HTTP status, Schema Registry error code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SchemaStore:
    """Schemas by id and by subject version, in memory.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}  # canonical (type, schema, references) → id
        self._schemas: dict[int, dict[str, Any]] = {}  # id → {schema, schemaType, references}
        self._subjects: dict[str, list[int]] = {}  # subject → schema id of each version

    def register(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(body)
        key = _canonical(entry)
        with self._lock:
            schema_id = self._ids.get(key)
            if schema_id is None:
                schema_id = self._ids[key] = len(self._schemas) + 1
                self._schemas[schema_id] = entry
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            version = versions.index(schema_id) + 1
        return _registered(subject, version, schema_id, entry)

    def lookup(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(body)
        with self._lock:
            versions = self._subject(subject)
            schema_id = self._ids.get(_canonical(entry))
            if schema_id not in versions:
                raise RegistryError(404, 40403, "Schema not found")
            return _registered(subject, versions.index(schema_id) + 1, schema_id, entry)

    def schema(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            entry = self._schemas.get(schema_id)
        if entry is None:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return _public(entry)

    def subjects_of(self, schema_id: int) -> list[dict[str, Any]]:
        self.schema(schema_id)
        with self._lock:
            return [
                {"subject": s, "version": v.index(schema_id) + 1}
                for s, v in sorted(self._subjects.items())
                if schema_id in v
            ]

    def subjects(self) -> list[str]:
        with self._lock:
            return sorted(self._subjects)

    def versions(self, subject: str) -> list[int]:
        with self._lock:
            return list(range(1, len(self._subject(subject)) + 1))

    def version(self, subject: str, version: str) -> dict[str, Any]:
        with self._lock:
            versions = self._subject(subject)
            if version in ("latest", "-1"):
                n = len(versions)
            elif version.isdigit() and 1 <= int(version) <= len(versions):
                n = int(version)
            else:
                raise RegistryError(404, 40402, f"Version {version} not found.")
            schema_id = versions[n - 1]
            return _registered(subject, n, schema_id, self._schemas[schema_id])

    def _subject(self, subject: str) -> list[int]:
        versions = self._subjects.get(subject)
        if not versions:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return versions

    def _entry(self, body: dict[str, Any]) -> dict[str, Any]:
        """A registration request's schema, checked: Avro must parse (with its references)."""
        text = body.get("schema")
        kind = body.get("schemaType") or "AVRO"
        refs = body.get("references") or []
        if not isinstance(text, str) or kind not in SCHEMA_TYPES or not isinstance(refs, list):
            raise RegistryError(422, 42201, "Invalid schema: 'schema' must be a string")
        references = [
            {"name": r["name"], "subject": r["subject"], "version": int(r["version"])}
            for r in refs
            if isinstance(r, dict)
        ]
        if kind == "AVRO":
            try:
                named: dict[str, Any] = {}
                for ref in references:
                    self._parse_reference(ref, named)
                fastavro.parse_schema(json.loads(text), named_schemas=named)
            except (ValueError, TypeError, KeyError, RegistryError, SchemaParseException) as exc:
                raise RegistryError(422, 42201, f"Invalid schema: {exc}") from exc
        return {"schema": text, "schemaType": kind, "references": references}

    def _parse_reference(self, ref: dict[str, Any], named: dict[str, Any]) -> None:
        with self._lock:
            versions = self._subject(ref["subject"])
            entry = self._schemas[versions[ref["version"] - 1]]
        for inner in entry["references"]:
            self._parse_reference(inner, named)
        fastavro.parse_schema(json.loads(entry["schema"]), named_schemas=named)


def _canonical(entry: dict[str, Any]) -> str:
    text = entry["schema"]
    if entry["schemaType"] in ("AVRO", "JSON"):
        text = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    return json.dumps([entry["schemaType"], text, entry["references"]], sort_keys=True)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    """As Confluent answers: ``schemaType`` only when not Avro, ``references`` when any."""
    out: dict[str, Any] = {"schema": entry["schema"]}
    if entry["schemaType"] != "AVRO":
        out["schemaType"] = entry["schemaType"]
    if entry["references"]:
        out["references"] = entry["references"]
    return out


def _registered(
    subject: str, version: int, schema_id: int, entry: dict[str, Any]
) -> dict[str, Any]:
    return {"subject": subject, "version": version, "id": schema_id, **_public(entry)}


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
