"""Helpers for pipeline tests: produce records, run the real connector process, read totals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import requests
from confluent_kafka import Consumer, Producer, TopicPartition

from connector import embedded
from connector.embedded import FAST_GROUP
from connector.kafka import produce_queued


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[Any],
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> int:
    """Produce JSON values (bytes are sent as they are); returns how many were acked."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )
    acked = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal acked
        assert err is None, err
        acked += 1

    n = 0
    for i, value in enumerate(values):
        data = value if isinstance(value, bytes) else orjson.dumps(value)
        kwargs: dict[str, Any] = {"key": str(i).encode(), "value": data, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        produce_queued(producer, topic, **kwargs)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush(30)
    assert acked == n
    return n


def usage_records(
    meter: str,
    n: int,
    customers: int = 5,
    value: Callable[[int], float] = lambda i: 1,
    t0: int = 1_767_225_600_000,
) -> list[dict[str, Any]]:
    """n native records for `meter`, spread over `customers` customers, one second apart."""
    return [
        {
            "customerId": f"{meter}-c{i % customers}",
            "meterApiName": meter,
            "meterValue": value(i),
            "meterTimeInMillis": t0 + i * 1000,
        }
        for i in range(n)
    ]


def expected_totals(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], float]:
    out: Counter[tuple[str, str]] = Counter()
    for r in records:
        out[(r["meterApiName"], r["customerId"])] += r.get("meterValue", 1)
    return dict(out)


class Emu:
    """Reads the emulator's test endpoints."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.s = requests.Session()
        self.s.headers["X-API-KEY"] = api_key

    def totals(self, meter: str) -> dict[tuple[str, str], float]:
        rows = self.s.get(f"{self.base_url}/_emulator/totals", timeout=10).json()["totals"]
        return {
            (r["meterApiName"], r["customerId"]): r["sum"]
            for r in rows
            if r["meterApiName"] == meter
        }

    def count(self, meter: str) -> int:
        rows = self.s.get(f"{self.base_url}/_emulator/totals", timeout=10).json()["totals"]
        return sum(r["count"] for r in rows if r["meterApiName"] == meter)

    def stats(self) -> dict[str, Any]:
        return dict(self.s.get(f"{self.base_url}/_emulator/stats", timeout=10).json())

    def fault(self, **spec: Any) -> None:
        self.s.post(f"{self.base_url}/_emulator/faults", json=spec, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        self.s.delete(f"{self.base_url}/_emulator/faults", timeout=10).raise_for_status()

    @contextmanager
    def slowed_ingest(self, latency_ms: int, requests: int) -> Iterator[None]:
        """The next ``requests`` calls to /ingest each stall ``latency_ms``; faults cleared on
        exit.  For tests that must stop a connector mid-stream however fast the machine is."""
        self.fault(latency_ms=latency_ms, count=requests, path="/ingest")
        try:
            yield
        finally:
            self.clear_faults()


def connector_env(
    bootstrap: str, topic: str, emu_url: str, api_key: str, group: str, **extra: str
) -> dict[str, str]:
    """The connector against the test broker and emulator, with short timeouts and retries."""
    fast = {
        "CONNECTOR_KAFKA__STARTUP_TIMEOUT_S": "10",
        "CONNECTOR_SINK__LINGER_MS": "50",
        "CONNECTOR_SINK__RETRY_INITIAL_S": "0.1",
        "CONNECTOR_SINK__RETRY_MAX_S": "1",
        "CONNECTOR_SHUTDOWN_TIMEOUT_S": "10",
    }
    return embedded.connector_env(bootstrap, topic, emu_url, api_key, group, **{**fast, **extra})


class ConnectorProcess:
    """`amberflo-connector run` as a real child process (so it can be SIGKILLed)."""

    def __init__(self, env: dict[str, str], log: Path, args: list[str] | None = None) -> None:
        self.env = env
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", *(args or [])],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (-1001 when none), read without joining the group."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 20) -> list[Any]:
    """Read `expect` messages of a topic from the beginning (no group commits)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **FAST_GROUP,
        }
    )
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    out.append(m)
        return out
    finally:
        c.close()
