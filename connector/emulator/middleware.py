"""The emulator's ASGI middleware: one pass that every HTTP request goes through, in order:

1. Trailing slash: ``/ingest/`` is served as ``/ingest`` (the path is rewritten, never
   redirected, so POST bodies survive).  Applies to every path.
2. ``/healthz`` is answered by the app with no further checks.
3. Auth: the ``X-API-KEY`` header (any case) must be one of the configured keys, else 401
   ``{"message", "code": "UNAUTHORIZED"}``.  This includes ``/openapi.json`` and the
   ``/_emulator/*`` controls.
4. Faults (``/_emulator/faults``): the first queued fault whose ``path`` is a prefix of the
   request path (no path = any path) and whose ``method`` is the request's (none = any) is
   consumed: the request stalls ``latency_ms`` and then, when the fault has a ``status``,
   fails with it (plus ``Retry-After`` when given); without a status it is then processed
   normally.  An ``after`` fault processes the request first and then stalls and/or replaces
   the answer (the change is stored, the client does not learn it).  ``/_emulator/*`` is
   never faulted.
5. Content-Type: a POST/PUT body is read as JSON whatever its Content-Type says (curl's
   default form type included), as clients of the live API expect.
6. Counting: every response status except for ``/healthz`` and ``/_emulator/*`` is counted in
   ``Stats.requests`` (so a test's own stats calls do not move the counts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/_emulator"


@dataclass(slots=True)
class Fault:
    """One queued fault; ``remaining`` counts the requests it still applies to."""

    remaining: int
    status: int | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    path: str | None = None
    method: str | None = None
    after: bool = False

    def matches(self, path: str, method: str) -> bool:
        return (self.path is None or path.startswith(self.path)) and self.method in (None, method)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "count": self.remaining,
            "retry_after": self.retry_after,
            "latency_ms": self.latency_ms,
            "path": self.path,
            "method": self.method,
            "after": self.after,
        }


@dataclass(slots=True)
class Stats:
    """Counters since the process started (``records_stored`` comes from the store)."""

    requests: dict[str, int] = field(default_factory=dict)
    events_accepted: int = 0
    duplicates: int = 0
    filtered: int = 0
    ingest_requests: int = 0
    s3_objects_ingested: int = 0
    s3_objects_rejected: int = 0


@dataclass(slots=True)
class Faults:
    """The fault queue, used only from the event loop (no locking needed)."""

    queue: list[Fault] = field(default_factory=list)

    def take(self, path: str, method: str) -> Fault | None:
        """Consume one use of the first fault matching ``path`` and ``method``."""
        for i, fault in enumerate(self.queue):
            if fault.matches(path, method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self.queue[i]
                return fault
        return None


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]]) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _as_json(scope: Scope) -> Scope:
    """The scope with its Content-Type forced to JSON when it is missing or not JSON."""
    headers = scope["headers"]
    for name, value in headers:
        if name == b"content-type" and b"json" in value.lower():
            return scope
    scope = dict(scope)
    scope["headers"] = [
        *((n, v) for n, v in headers if n != b"content-type"),
        (b"content-type", b"application/json"),
    ]
    return scope


class EmulatorMiddleware:
    """See the module docstring for what it does, in which order."""

    def __init__(self, app: ASGIApp, api_keys: list[str], faults: Faults, stats: Stats) -> None:
        self.app = app
        self.api_keys = frozenset(k.encode() for k in api_keys)
        self.faults = faults
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            scope = dict(scope)
            path = path.rstrip("/") or "/"
            scope["path"] = path
            raw = scope.get("raw_path")
            if raw:
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        if path == "/healthz":
            await self.app(scope, receive, send)
            return
        control = path.startswith(CONTROL_PREFIX)
        if not control:
            send = self._counting(send)
        key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value
                break
        if key not in self.api_keys:
            message = "missing X-API-KEY header" if key is None else "invalid API key"
            await send_json(send, 401, {"message": message, "code": "UNAUTHORIZED"}, [])
            return
        fault = None if control else self.faults.take(path, scope["method"])
        if fault is not None and fault.after:
            await self._fault_after(scope, receive, send, fault)
            return
        if fault is not None:
            if fault.latency_ms > 0:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.status is not None:
                await self._fail(send, fault.status, fault.retry_after)
                return
        if scope["method"] in ("POST", "PUT") and path != "/ingest":
            scope = _as_json(scope)
        await self.app(scope, receive, send)

    async def _fault_after(self, scope: Scope, receive: Receive, send: Send, fault: Fault) -> None:
        """Process the request, then stall and/or replace its answer."""
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        if scope["method"] in ("POST", "PUT") and scope["path"] != "/ingest":
            scope = _as_json(scope)
        await self.app(scope, receive, hold)
        if fault.latency_ms > 0:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.status is not None:
            await self._fail(send, fault.status, fault.retry_after)
            return
        for message in held:
            await send(message)

    def _counting(self, send: Send) -> Send:
        requests = self.stats.requests

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = str(message["status"])
                requests[status] = requests.get(status, 0) + 1
            await send(message)

        return counting_send

    @staticmethod
    async def _fail(send: Send, status: int, retry_after: float | None) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Injected Fault"
        headers = []
        if retry_after is not None:
            headers.append((b"retry-after", _retry_after(retry_after).encode()))
        body = {
            "message": f"{phrase} (fault injected by the emulator)",
            "code": phrase.upper().replace(" ", "_").replace("-", "_"),
        }
        await send_json(send, status, body, headers)
