"""Shared pieces of the benchmarks: the workload, the services, the connector process, stats."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connector import embedded
from connector.embedded import EmbeddedEmulator
from connector.kafka import produce_queued

API_KEY = "bench-key"
PARTITIONS = 6
# Fast group joins on Tansu (a join takes about half the session timeout).
FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 250}
T0_MS = 1_767_225_600_000


def record_value(i: int, meter: str = "api-calls", with_time: bool = True) -> bytes:
    """One native usage record (~250 bytes of JSON); no uniqueId, so the connector derives one."""
    doc: dict[str, Any] = {
        "customerId": f"customer-{i % 1000:06d}",
        "meterApiName": meter,
        "meterValue": 1 + i % 7,
    }
    if with_time:
        doc["meterTimeInMillis"] = T0_MS + i
    doc["dimensions"] = {
        "region": ("eu-west-1", "us-east-1", "ap-south-1")[i % 3],
        "plan": ("free", "team", "enterprise")[i % 3],
        "endpoint": f"/v1/projects/{i % 97}/orders/create",
        "method": "POST",
        "status": "200",
        "sdk": "python-3.11",
    }
    return orjson.dumps(doc)


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions)])[name].result(10)
    return name


def new_producer(bootstrap: str, linger_ms: int = 20) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )


def produce(bootstrap: str, topic: str, n: int, meter: str = "api-calls") -> None:
    """Produce ``n`` records round-robin over the topic's partitions; waits for every ack."""
    producer = new_producer(bootstrap)
    failed = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    for i in range(n):
        value = record_value(i, meter)
        produce_queued(
            producer,
            topic,
            value=value,
            partition=i % PARTITIONS,
            on_delivery=on_delivery,
            wait_s=0.01,
        )
        if i % 20_000 == 0:
            producer.poll(0)
    if producer.flush(60) or failed:
        raise RuntimeError(f"producing to {topic}: {failed} failed deliveries")


class Emu:
    """The emulator's test endpoints (stats, records, faults)."""

    def __init__(self, base_url: str, api_key: str = API_KEY) -> None:
        self.base_url = base_url
        self.s = requests.Session()
        self.s.headers["X-API-KEY"] = api_key

    def stored(self) -> int:
        r = self.s.get(f"{self.base_url}/_emulator/stats", timeout=10)
        r.raise_for_status()
        return int(r.json()["records_stored"])

    def fault(self, **spec: Any) -> None:
        self.s.post(f"{self.base_url}/_emulator/faults", json=spec, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        self.s.delete(f"{self.base_url}/_emulator/faults", timeout=10).raise_for_status()

    def records(self, meter: str) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            r = self.s.get(
                f"{self.base_url}/_emulator/records",
                params={"after_id": after, "limit": 10_000, "meterApiName": meter},
                timeout=60,
            )
            r.raise_for_status()
            page = r.json()
            if not page["records"]:
                return
            yield from page["records"]
            after = page["next_after_id"]


@contextmanager
def emulator(workdir: Path, name: str) -> Iterator[EmbeddedEmulator]:
    """A fresh emulator (new SQLite file) so that repetitions start from the same state."""
    db = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with EmbeddedEmulator(db=db, api_key=API_KEY, log_path=workdir / f"{name}.log") as emu:
        yield emu


def connector_env(bootstrap: str, topic: str, url: str, group: str, **extra: str) -> dict[str, str]:
    """Environment of ``amberflo-connector run``: defaults except fast group joins and logs,
    and a uniqueId namespace of the run's own, so that every run's events are new to a sink
    that an earlier run filled (derived ids do not depend on the group)."""
    return embedded.connector_env(
        bootstrap,
        topic,
        url,
        API_KEY,
        group,
        consumer=FAST_GROUP,
        **{
            "CONNECTOR_LOG__LEVEL": "WARNING",
            "CONNECTOR_TRANSFORM__UNIQUE_ID_NAMESPACE": f"bench/{group}",
            **extra,
        },
    )


class Connector:
    """``amberflo-connector run`` as a child process (exactly what a user runs)."""

    def __init__(self, env: dict[str, str], log: Path, argv: list[str] | None = None) -> None:
        self._log = open(log, "ab")  # noqa: SIM115
        self.log_path = log
        cmd = argv or [sys.executable, "-m", "connector", "run"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the connector exited with {self.proc.returncode}:\n{tail}")


@dataclass
class Drain:
    """How a sink filled up: rate measured from the first observed record to the last."""

    rate: float
    elapsed: float
    stored: int
    first: int = 0  # records already stored when the clock started
    cpu_us_per_record: float = float("nan")
    complete: bool = True


def wait_drained(
    count: Callable[[], int],
    target: int,
    timeout: float,
    alive: Callable[[], None] = lambda: None,
    interval: float = 0.05,
    baseline: int = 0,
    on_first: Callable[[], None] = lambda: None,
    partial: bool = False,
) -> Drain:
    """Poll ``count()`` until it reaches ``baseline + target``.

    The clock starts at the first poll that sees a record (so process start-up and the group
    join are excluded) and the rate counts only the records stored after that poll.  Raises
    ``TimeoutError`` past ``timeout`` (with what was reached in the message).  ``on_first``
    is called when the clock starts.  With ``partial``, ``timeout`` counts from that moment
    and returns what was reached (``complete=False``) instead of raising.
    """
    deadline = time.monotonic() + (max(timeout, 120) if partial else timeout)
    first_t = 0.0
    first_n = 0
    while True:
        n = count() - baseline
        now = time.monotonic()
        if n > 0 and not first_t:
            first_t, first_n = now, n
            on_first()
        if n >= target:
            elapsed = now - first_t
            rate = (n - first_n) / elapsed if elapsed > 0 else float("inf")
            return Drain(rate, elapsed, n, first_n)
        if partial and first_t:
            deadline = first_t + timeout  # the cap counts from the first record stored
        if now > deadline:
            if partial and first_t:
                rate = (n - first_n) / (now - first_t)
                return Drain(rate, now - first_t, n, first_n, complete=False)
            raise TimeoutError(f"{n:,} of {target:,} stored after {timeout:.0f}s")
        alive()
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of ``pid`` from /proc (the process's own peak, kernel-tracked)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


@dataclass
class Figure:
    """One measured figure: its samples (one per repetition) and how to show it."""

    key: str
    title: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def lo(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def hi(self) -> float:
        return max(self.samples) if self.samples else float("nan")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
