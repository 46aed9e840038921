"""A locked-down cluster for tests: a Kafka-protocol proxy that answers chosen requests with
an authorization error, as a broker whose ACLs deny them would, and forwards the rest.

Tansu has no ACLs, so the gate sits in front of a ``tansu proxy`` that advertises the gate's
own port (every connection of the client then goes through the gate):

    client → Gate (port G) → tansu proxy (port Q, advertises G) → the session's broker

Only what the tests deny is parsed: CreateTopics requests (v0-v4) get a response naming each
requested topic with ``TOPIC_AUTHORIZATION_FAILED`` (29).  Every request's API key is
recorded, so a test can also assert that a request was never made.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from connector.embedded import free_port
from tests.integration.failure_harness import tansu_proxy

CREATE_TOPICS = 19
TOPIC_AUTHORIZATION_FAILED = 29


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    return _read_exact(sock, struct.unpack(">i", head)[0])


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return text


def _create_topics_names(body: _Reader) -> list[str]:
    """The topic names of a CreateTopics request body (versions 0-4)."""
    names = []
    for _ in range(body.take(">i")):
        names.append(body.string() or "")
        body.take(">i")  # num_partitions
        body.take(">h")  # replication_factor
        for _ in range(max(0, body.take(">i"))):  # assignments
            body.take(">i")
            body.pos += 4 * max(0, body.take(">i"))
        for _ in range(max(0, body.take(">i"))):  # configs
            body.string()
            body.string()
    return names


def _denied_create_topics(version: int, correlation: int, names: list[str]) -> bytes:
    out = struct.pack(">i", correlation)
    if version >= 2:
        out += struct.pack(">i", 0)  # throttle_time_ms
    out += struct.pack(">i", len(names))
    for name in names:
        raw = name.encode()
        out += struct.pack(">h", len(raw)) + raw + struct.pack(">h", TOPIC_AUTHORIZATION_FAILED)
        if version >= 1:
            message = b"Authorization failed."
            out += struct.pack(">h", len(message)) + message
    return struct.pack(">i", len(out)) + out


@dataclass
class Gate:
    upstream: int
    port: int = field(default_factory=free_port)
    deny_create_topics: bool = True
    seen: list[int] = field(default_factory=list)  # API keys of every request, in order
    denied: list[str] = field(default_factory=list)  # topics a CreateTopics asked for

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            lock = threading.Lock()
            threading.Thread(
                target=self._requests, args=(client, upstream, lock), daemon=True
            ).start()
            threading.Thread(
                target=self._responses, args=(upstream, client, lock), daemon=True
            ).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, lock: threading.Lock
    ) -> None:
        with contextlib.suppress(OSError):
            while (frame := _read_frame(client)) is not None:
                head = _Reader(frame)
                api_key, version, correlation = head.take(">h"), head.take(">h"), head.take(">i")
                self.seen.append(api_key)
                if api_key == CREATE_TOPICS and self.deny_create_topics and version <= 4:
                    head.string()  # client_id
                    names = _create_topics_names(head)
                    self.denied.extend(names)
                    with lock:
                        client.sendall(_denied_create_topics(version, correlation, names))
                    continue
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _responses(upstream: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        with contextlib.suppress(OSError):
            while (frame := _read_frame(upstream)) is not None:
                with lock:
                    client.sendall(struct.pack(">i", len(frame)) + frame)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def locked_down(broker: str) -> Iterator[Gate]:
    """A gate in front of ``broker``; its ``bootstrap`` is ``127.0.0.1:<gate.port>``."""
    inner = free_port()
    gate = Gate(upstream=inner)
    try:
        with tansu_proxy(inner, broker, advertised=gate.port):
            yield gate
    finally:
        gate.close()
