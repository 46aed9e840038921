"""Signals are honoured everywhere: start-up, a revoke wait, `run --workers N`, the demo.

Real processes and real signals: the connector, its supervisor and the demo run as children;
Amberflo or Kafka that never answers is a listening socket that accepts and stays silent.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.embedded import free_port
from tests.conftest import Emulator
from tests.integration.harness import (
    ConnectorProcess,
    Emu,
    committed,
    connector_env,
    produce,
    usage_records,
    wait_until,
)


class Silent:
    """A TCP server that accepts connections and never answers (a hung Amberflo or broker)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self._held.append(conn)
            self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self._server.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


def stop_and_time(proc: ConnectorProcess, sig: int = signal.SIGTERM) -> tuple[int, float]:
    started = time.monotonic()
    proc.signal(sig)
    code = proc.wait(60)
    return code, time.monotonic() - started


@pytest.mark.parametrize("hung", ["amberflo", "kafka"])
def test_sigterm_during_start_up_acts_within_a_second(
    hung: str, silent: Silent, amberflo_emulator: Emulator, tmp_path: Path
) -> None:
    """The credential check (a request that never gets an answer) or the wait for a broker
    that never answers: SIGTERM ends the start at once, exit 0, no traceback."""
    if hung == "amberflo":
        env = connector_env("127.0.0.1:1", "t", f"http://127.0.0.1:{silent.port}", "k", "g")
    else:
        env = connector_env(
            f"127.0.0.1:{silent.port}",
            "t",
            amberflo_emulator.base_url,
            amberflo_emulator.api_key,
            "g",
        )
    env["CONNECTOR_KAFKA__STARTUP_TIMEOUT_S"] = "60"
    proc = ConnectorProcess(env, tmp_path / "c.log")
    try:
        wait_until(lambda: silent.accepted > 0, 30, f"the connector waiting on {hung}")
        time.sleep(0.3)  # well inside the wait now
        code, took = stop_and_time(proc)
        out = proc.output()
        assert code == 0, out
        assert took < 1.5, f"took {took:.1f}s to act on SIGTERM"
        assert "during start-up: stopped, nothing was consumed" in out
        assert "Traceback" not in out
    finally:
        proc.close()


def hanging(emu: Emu) -> int:
    """/ingest requests the slowed-ingest fault has taken so far (it was queued for 50)."""
    faults = emu.s.get(f"{emu.base_url}/_emulator/faults", timeout=10).json()["faults"]
    return 50 - sum(int(f["count"]) for f in faults)


def test_sigterm_during_a_revoke_wait_keeps_the_whole_shutdown_within_the_timeout(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    amberflo_emulator: Emulator,
    tmp_path: Path,
) -> None:
    """Worker A has batches stuck in /ingest when B joins: A's revoke waits for them.  A
    SIGTERM then must not grant the shutdown a second CONNECTOR_SHUTDOWN_TIMEOUT_S: A is gone
    within the timeout of the signal, and exits 0."""
    emu = Emu(amberflo_emulator.base_url, amberflo_emulator.api_key)
    topic, group = topic_factory(2), f"g-revoke-{time.monotonic_ns()}"
    shutdown_s = 6.0

    def start(name: str) -> ConnectorProcess:
        env = connector_env(
            kafka_broker,
            topic,
            amberflo_emulator.base_url,
            amberflo_emulator.api_key,
            group,
            CONNECTOR_SHUTDOWN_TIMEOUT_S=str(shutdown_s),
            CONNECTOR_SINK__REQUEST_TIMEOUT_S="120",
        )
        return ConnectorProcess(env, tmp_path / f"{name}.log")

    a = start("a")
    b: ConnectorProcess | None = None
    try:
        wait_until(lambda: "assigned" in a.output(), 30, "A assigned")
        with emu.slowed_ingest(latency_ms=60_000, requests=50):
            produce(kafka_broker, topic, usage_records(f"rv-{group}", 40), partition=0)
            produce(kafka_broker, topic, usage_records(f"rv-{group}", 40), partition=1)
            wait_until(lambda: hanging(emu) > 0, 30, "A's requests hanging in /ingest")
            b = start("b")
            wait_until(lambda: "revoked" in a.output(), 30, "A revoking with work in flight")
            time.sleep(1.0)  # A is inside its revoke wait
            code, took = stop_and_time(a)
        out = a.output()
        assert code == 0, out
        assert took < shutdown_s + 2.5, f"A took {took:.1f}s (timeout {shutdown_s}s): {out}"
        assert "Traceback" not in out
    finally:
        a.close()
        if b is not None:
            b.close()


def test_ctrl_c_reaches_each_worker_once_and_each_commits(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    amberflo_emulator: Emulator,
    tmp_path: Path,
) -> None:
    """`run --workers 2` in a terminal: Ctrl-C is SIGINT to the whole foreground process
    group.  Each worker must get it once (through the supervisor), finish, commit, exit 0."""
    topic, group = topic_factory(2), f"g-ctrlc-{time.monotonic_ns()}"
    records = usage_records(f"cc-{group}", 200)
    produce(kafka_broker, topic, records)
    env = connector_env(
        kafka_broker, topic, amberflo_emulator.base_url, amberflo_emulator.api_key, group
    )
    log = tmp_path / "sup.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a shell's foreground job
        )
    try:
        wait_until(
            lambda: sum(committed(kafka_broker, group, topic, 2).values()) == len(records),
            60,
            "every record committed",
        )
        started = re.search(r"started 2 workers: (\d+), (\d+)", log.read_text())
        assert started is not None, log.read_text()
        # Not in the terminal's group (the supervisor's): the terminal's SIGINT reaches the
        # supervisor only, which forwards it once; in the same group a worker would get it
        # twice, and a second signal means "exit at once, commit nothing".
        for pid in map(int, started.groups()):
            assert os.getpgid(pid) != os.getpgid(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert proc.wait(60) == 0, log.read_text()
        text = log.read_text()
        assert text.count("finishing in-flight work, then committing") == 2, text
        assert "second signal" not in text
        assert text.count("INFO connector.worker: stopped") == 2, text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    log = tmp_path / "demo.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "demo", "--events", "2000", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    return proc, log


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("when", ["keep-running", "mid-run"])
def test_sigterm_to_the_demo_stops_its_broker_emulator_and_connector(
    when: str, tmp_path: Path
) -> None:
    proc, log = _demo(tmp_path, *(["--keep-running"] if when == "keep-running" else []))
    try:
        marker = "Left running:" if when == "keep-running" else "Amberflo API"
        wait_until(lambda: marker in log.read_text(), 120, f"the demo printing {marker!r}")
        text = log.read_text()
        kafka = int(re.search(r"Kafka broker\s+127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        emulator = int(re.search(r"Amberflo API\s+http://127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        assert _listening(kafka) and _listening(emulator)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        assert code == (0 if when == "keep-running" else 128 + signal.SIGTERM), log.read_text()
        wait_until(lambda: not _listening(kafka) and not _listening(emulator), 10, "helpers gone")
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
