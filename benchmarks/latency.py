"""Figure 5: end-to-end delay at a steady produce rate, and the connector's RSS at rest.

A connector with default settings (linger 200 ms) runs against the emulator; after a warm-up
the benchmark produces records *without* ``meterTimeInMillis`` at a steady rate, so each
stored event's ``meterTimeInMillis`` is its Kafka record timestamp (set by the producer at
``produce()``).  Delay = the emulator's ``ingestedAtMillis`` − that timestamp: it covers the
producer's own linger (5 ms), the broker, the connector and the emulator's commit.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import (
    Connector,
    Emu,
    connector_env,
    create_topic,
    new_producer,
    record_value,
    vm_status,
    wait_drained,
)
from connector.kafka import produce_queued


def _produce_steady(bootstrap: str, topic: str, meter: str, rate: int, seconds: float) -> float:
    """Produce ``rate`` records/s for ``seconds`` (a 5 ms tick schedule); returns the rate
    actually achieved."""
    producer = new_producer(bootstrap, linger_ms=5)
    total = int(rate * seconds)
    i = 0
    started = time.perf_counter()
    while i < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while i < due:
            value = record_value(i, meter, with_time=False)
            produce_queued(producer, topic, value=value, wait_s=0.001)
            i += 1
        producer.poll(0)
        time.sleep(0.005)
    achieved = total / (time.perf_counter() - started)
    producer.flush(30)
    return achieved


def percentile(sorted_values: list[float], q: float) -> float:
    k = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def run(
    bootstrap: str,
    emu_url: str,
    stored: Callable[[], int],
    workdir: Path,
    rate: int = 20_000,
    seconds: float = 10.0,
    **env: str,
) -> dict[str, float]:
    """p50/p95/p99/max delay (ms), the achieved produce rate and the RSS at rest (MB)."""
    tag = uuid.uuid4().hex[:8]
    topic = create_topic(bootstrap, f"bench-latency-{tag}")
    emu = Emu(emu_url)
    proc = Connector(
        connector_env(bootstrap, topic, emu_url, f"bench-lat-{tag}", **env),
        workdir / f"latency-{tag}.log",
    )
    try:
        base = stored()
        warm = new_producer(bootstrap, linger_ms=5)
        for i in range(100):
            warm.produce(topic, record_value(i, f"warmup-{tag}", with_time=False))
        warm.flush(10)
        wait_drained(stored, 100, 60, proc.check_alive, baseline=base)
        time.sleep(0.5)
        rest_mb = vm_status(proc.pid).get("VmRSS", 0) / 1024
        meter = f"latency-{tag}"
        base = stored()
        achieved = _produce_steady(bootstrap, topic, meter, rate, seconds)
        n = int(rate * seconds)
        wait_drained(stored, n, 120, proc.check_alive, baseline=base)
    finally:
        proc.stop()
    delays = sorted(
        float(r["ingestedAtMillis"] - r["meterTimeInMillis"]) for r in emu.records(meter)
    )
    if len(delays) != n:
        raise RuntimeError(f"latency: {len(delays):,} of {n:,} records found")
    return {
        "p50": percentile(delays, 0.50),
        "p95": percentile(delays, 0.95),
        "p99": percentile(delays, 0.99),
        "max": delays[-1],
        "mean": statistics.fmean(delays),
        "produced_rate": achieved,
        "rest_mb": rest_mb,
    }
