"""One chaos scenario's world: its own emulator (restartable on the same database), a fresh
topic on the session's broker, real ``amberflo-connector run`` processes with metrics ports,
a sampler that scrapes their /metrics and memory throughout, and the report row.

``make chaos`` sets ``CHAOS_SCALE=full`` (the issue's sizes); otherwise, as in ``make test``,
each scenario runs reduced (fewer events, shorter faults).  Every scenario writes its row to
``$CHAOS_RESULTS`` (default ``build/chaos-reduced``); ``tests.chaos.report`` turns the rows
into RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from connector.embedded import EmbeddedEmulator, free_port
from tests.integration.failure_harness import read_topic, scrape
from tests.integration.harness import ConnectorProcess, Emu, connector_env, wait_until

FULL = os.environ.get("CHAOS_SCALE") == "full"
RESULTS = Path(os.environ.get("CHAOS_RESULTS", "build/chaos-reduced"))
API_KEY = "chaos-key"
CONSUMER = {
    "session.timeout.ms": 3000,
    "heartbeat.interval.ms": 300,
    "statistics.interval.ms": 1000,
}
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scale(reduced: Any, full: Any) -> Any:
    return full if FULL else reduced


@dataclass
class Row:
    """One line of RELIABILITY.md."""

    scenario: str
    title: str
    events: int = 0
    faults: list[str] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: int = 0
    recover_s: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    passed: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    full: bool = FULL
    sdk: bool = False  # a comparison row: the official SDK's loop instead of the connector
    lost: int = 0
    counted_twice: int = 0

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{self.scenario}.json").write_text(json.dumps(asdict(self), indent=1))


def memory_kb(pid: int, field_name: str = "VmHWM") -> int:
    """``VmHWM`` (peak resident set) or ``VmRSS`` of a live process, in kB (0 once gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Scrapes every live connector's /metrics and memory every ``interval`` seconds."""

    def __init__(self, chaos: Chaos, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.chaos, self.interval = chaos, interval
        self.samples: list[tuple[float, int, Samples]] = []  # (monotonic, slot, samples)
        self.rss_kb: list[tuple[float, int]] = []  # (monotonic, VmRSS of all workers)
        self.peak_kb = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            now, rss = time.monotonic(), 0
            for slot, proc in list(self.chaos.procs.items()):
                if proc.proc.poll() is not None:
                    continue
                self.peak_kb = max(self.peak_kb, memory_kb(proc.proc.pid))
                rss += memory_kb(proc.proc.pid, "VmRSS")
                got = scrape(self.chaos.ports[slot])
                if got:
                    self.samples.append((now, slot, got))
            self.rss_kb.append((now, rss))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def values(
        self,
        name: str,
        since: float = 0.0,
        until: float = float("inf"),
        agg: Callable[[list[float]], float] = sum,
    ) -> list[float]:
        """Per scrape, ``agg`` (sum, max) over the label sets of ``amberflo_connector_<name>``."""
        full = f"amberflo_connector_{name}"
        return [
            agg([v for _labels, v in got[full]] or [0.0])
            for t, _slot, got in self.samples
            if since <= t <= until and full in got
        ]

    def last(self, slot: int = 0) -> Samples:
        for _t, s, got in reversed(self.samples):
            if s == slot:
                return got
        return {}


class SdkLoopProcess(ConnectorProcess):
    """``benchmarks.sdk_loop`` as a user would run it (see its docstring), killable like a
    connector."""

    def __init__(self, bootstrap: str, topic: str, url: str, group: str, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115
        args = [bootstrap, topic, url, "0", "--group", group, "--api-key", API_KEY]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sdk_loop", *args, "--skip-bad", "--drop-when-full"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


class Chaos:
    """The services, topic and connector processes of one scenario."""

    def __init__(
        self,
        row: Row,
        kafka_broker: str,
        topic_factory: Callable[..., str],
        tmp_path: Path,
        partitions: int = 4,
        topic_config: dict[str, str] | None = None,
    ) -> None:
        self.row, self.kafka, self.dir = row, kafka_broker, tmp_path
        self.db = tmp_path / "emulator.db"
        self.emulator = EmbeddedEmulator(self.db, API_KEY, log_path=tmp_path / "emulator.log")
        self.api = Emu(self.emulator.base_url, API_KEY)
        self.topic = topic_factory(partitions, prefix=f"chaos-{row.scenario}", config=topic_config)
        self.partitions = partitions
        self.group = f"chaos-{row.scenario}-{uuid.uuid4().hex[:6]}"
        self.procs: dict[int, ConnectorProcess] = {}
        self.ports: dict[int, int] = {}
        self.logs: list[Path] = []
        self._duplicates_before = 0  # of emulator processes already stopped
        self.started = time.monotonic()
        self.sampler = Sampler(self)
        self.sampler.start()

    # -- connector processes --------------------------------------------------------------
    def env(self, slot: int = 0, bootstrap: str | None = None, **extra: str) -> dict[str, str]:
        port = self.ports.setdefault(slot, free_port())
        extra.setdefault("CONNECTOR_KAFKA__CONSUMER", json.dumps(CONSUMER))
        return connector_env(
            bootstrap or self.kafka,
            self.topic,
            self.emulator.base_url,
            API_KEY,
            self.group,
            CONNECTOR_METRICS_PORT=str(port),
            **extra,
        )

    def start(self, slot: int = 0, bootstrap: str | None = None, **extra: str) -> ConnectorProcess:
        old = self.procs.get(slot)
        if old is not None:
            old.close()
        log = self.dir / f"connector-{slot}-{len(self.logs)}.log"
        self.logs.append(log)
        proc = ConnectorProcess(self.env(slot, bootstrap, **extra), log)
        self.procs[slot] = proc
        return proc

    def start_sdk_loop(self, slot: int = 0) -> ConnectorProcess:
        old = self.procs.get(slot)
        if old is not None:
            old.close()
        self.ports.setdefault(slot, free_port())  # nothing serves it: the sampler skips it
        log = self.dir / f"sdk-loop-{slot}-{len(self.logs)}.log"
        self.logs.append(log)
        proc = SdkLoopProcess(self.kafka, self.topic, self.emulator.base_url, self.group, log)
        self.procs[slot] = proc
        return proc

    def kill(self, slot: int = 0) -> None:
        self.procs[slot].kill()

    def terminate(self, slot: int = 0, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        proc = self.procs[slot]
        t = time.monotonic()
        proc.signal(signal.SIGTERM)
        code = proc.wait(timeout)
        return code, time.monotonic() - t

    def ready(self, slot: int = 0, timeout: float = 60) -> None:
        """Wait until the worker consumes (its partitions are assigned)."""
        proc = self.procs[slot]
        wait_until(lambda: "assigned" in proc.output(), timeout, f"worker {slot} assigned")

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    # -- the emulator ---------------------------------------------------------------------
    def stored(self) -> int:
        return int(self.api.stats()["records_stored"])

    def stop_emulator(self) -> None:
        self._duplicates_before += int(self.api.stats()["duplicates"])
        self.emulator.close()

    def start_emulator(self) -> None:
        port = self.emulator.port
        self.emulator = EmbeddedEmulator(
            self.db, API_KEY, port=port, log_path=self.dir / "emulator.log"
        )

    def duplicates(self) -> int:
        return self._duplicates_before + int(self.api.stats()["duplicates"])

    def wait_stored(self, n: int, timeout: float, what: str = "") -> None:
        wait_until(lambda: self.stored() >= n, timeout, what or f"{n} records stored")

    def recovered_since(self, fault_end: float, timeout: float = 60) -> float:
        """Seconds from ``fault_end`` until the emulator stores something new."""
        before = self.stored()
        wait_until(lambda: self.stored() > before, timeout, "delivery to resume")
        took = time.monotonic() - fault_end
        self.row.recover_s.append(round(took, 1))
        return took

    # -- results --------------------------------------------------------------------------
    def assert_exact(self, expected: dict[tuple[str, str], float], meters: tuple[str, ...]) -> None:
        """Every meter × customer total is what was produced: nothing lost, nothing twice."""
        got: dict[tuple[str, str], float] = {}
        for meter in meters:
            got.update(self.api.totals(meter))
        missing = {k: v for k, v in expected.items() if got.get(k) != v}
        extra = {k: v for k, v in got.items() if k not in expected}
        assert not missing and not extra, (
            f"{len(missing)} cells differ, e.g. {list(missing.items())[:3]} "
            f"(stored {[got.get(k) for k in list(missing)[:3]]}); unexpected {extra}"
        )

    def dead_letters(self, expect: int | None = None) -> list[Message]:
        return read_topic(self.kafka, f"{self.topic}.dlq", expect=expect, idle=1.0)

    def close(self, passed: bool) -> None:
        self.sampler.stop()
        for proc in self.procs.values():
            proc.close()
        self.row.duplicates = self.duplicates() if self.emulator.proc.poll() is None else 0
        self.emulator.close()
        self.row.peak_rss_mb = round(self.sampler.peak_kb / 1024, 1)
        self.row.seconds = round(time.monotonic() - self.started, 1)
        self.row.passed = passed
        self.row.save()
