"""Chaos scenarios 4, 7 and 9: rebalance churn in a group of three, a slow sink under a big
backlog (memory and the retention guard), and bad input at the edges.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from connector.embedded import free_port
from tests.chaos.harness import API_KEY, Chaos, Row, scale
from tests.chaos.workload import Feeder, Workload
from tests.integration.failure_harness import produce_raw, scrape
from tests.integration.harness import wait_until

HOUR_MS = 3_600_000

# Full sizes (make chaos) take minutes per scenario; pytest's default cap is 300 s.
pytestmark = pytest.mark.timeout(scale(300, 1200))


def owned(c: Chaos, slot: int) -> set[str]:
    """The partitions a worker's gauges are labelled with (revoked ones are removed)."""
    got = scrape(c.ports[slot])
    return {
        labels["partition"]
        for labels, _v in got.get("amberflo_connector_oldest_unfinished_age_seconds", [])
    }


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_s4_rebalance_churn(chaos: Callable[..., Chaos], row: Row, strategy: str) -> None:
    """4. Rebalance churn: 3 workers in one group, one stopped and started every few seconds."""
    churn_s, every_s = scale(8, 60), scale(3, 4)
    c = chaos(partitions=6)
    n = scale(20_000, 150_000)
    w = Workload(n)
    row.events = n
    env = {"CONNECTOR_KAFKA__ASSIGNMENT_STRATEGY": strategy}
    feeder = Feeder(c.kafka, c.topic, w, rate=n / (churn_s + 5))
    feeder.start()
    for slot in range(3):
        c.start(slot, **env)
    for slot in range(3):
        c.ready(slot)
    started, cycles = time.monotonic(), 0
    while time.monotonic() - started < churn_s:
        slot = cycles % 3
        code, _ = c.terminate(slot)
        assert code == 0
        c.start(slot, **env)
        cycles += 1
        time.sleep(every_s)
    row.faults.append(f"{cycles} stop/start cycles in {churn_s}s, {strategy}")
    feeder.finish()
    c.wait_stored(w.valid, scale(90, 240))
    c.assert_exact(w.expected(), w.meters)

    def settled() -> bool:
        parts = [owned(c, slot) for slot in range(3)]
        return sum(len(p) for p in parts) == 6 and len(set().union(*parts)) == 6

    wait_until(settled, 60, "each partition's gauges on exactly one worker")
    assert c.dead_letters() == []


def test_s7_slow_sink_backlog(chaos: Callable[..., Chaos], row: Row) -> None:
    """7. Slow sink (500 ms per request) under a big backlog: memory bounded, the retention
    guard reports the growing age, the backlog drains once the sink is fast again."""
    n, slow_s, latency = scale(100_000, 1_000_000), scale(8, 20), scale(300, 500)
    # The records are 35 minutes old on a topic that keeps them an hour: the guard is at
    # warn (58%) and the age grows while the sink is slow.
    c = chaos(topic_config={"retention.ms": str(HOUR_MS)})
    w = Workload(n)
    row.events = n
    produced = time.monotonic()
    Feeder(c.kafka, c.topic, w, timestamp_ms=int(time.time() * 1000) - 35 * 60_000).produce()
    row.notes.append(f"backlog of {n:,} produced in {time.monotonic() - produced:.0f}s")
    c.api.fault(latency_ms=latency, count=1_000_000, path="/ingest")
    c.start()
    c.ready()
    c.wait_stored(1, 60)
    start = time.monotonic()
    time.sleep(slow_s)
    # (0 in a scrape taken before the worker's first tick: nothing measured yet)
    ratios = [r for r in c.sampler.values("retention_used_ratio", since=start, agg=max) if r]
    ages = [a for a in c.sampler.values("oldest_unfinished_age_seconds", since=start, agg=max) if a]
    assert ratios and 0.8 > ratios[-1] > ratios[0] > 0.5, f"share not growing: {ratios}"
    assert ages[-1] > ages[0] >= 35 * 60
    assert max(c.sampler.values("retention_guard", since=start)) == 1
    assert "retention guard warn" in c.output()
    assert max(c.sampler.values("paused", since=start)) == 1, "backpressure paused consumption"
    assert max(c.sampler.values("buffered_records", since=start)) <= 50_000
    row.faults.append(f"/ingest {latency} ms per request for {slow_s}s")
    c.api.clear_faults()
    c.recovered_since(time.monotonic())
    c.wait_stored(w.valid, scale(120, 600), "the backlog drained")
    c.assert_exact(w.expected(), w.meters)
    peak_mb = max(kb for _t, kb in c.sampler.rss_kb) / 1024
    row.notes.append(f"RSS sampled every 0.25 s: at most {peak_mb:.0f} MB")
    assert peak_mb < 300, f"RSS reached {peak_mb:.0f} MB"


def _run(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("amberflo-connector:")]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc.returncode, lines


def test_s9_bad_input_at_the_edges(chaos: Callable[..., Chaos], row: Row, tmp_path: Path) -> None:
    """9. Bad input at the edges: each a one-line error or a dead letter, never a hang."""
    c = chaos(partitions=1)
    env = c.env()
    cases: list[tuple[str, dict[str, str], list[str], int, str]] = [
        ("empty topic list", {"CONNECTOR_KAFKA__TOPICS": ""}, ["run"], 2, "KAFKA__TOPICS"),
        (
            "unreachable broker",
            {
                "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                "CONNECTOR_KAFKA__STARTUP_TIMEOUT_S": "3",
            },
            ["run"],
            1,
            "cannot reach Kafka",
        ),
        ("wrong API key", {"CONNECTOR_AMBERFLO__API_KEY": "wrong"}, ["run"], 1, "API key"),
    ]
    bad_yaml = tmp_path / "connector.yaml"
    bad_yaml.write_text("kafka:\n  topics: [usage\n  group_id: x\n", encoding="utf-8")
    cases.append(("malformed YAML", {}, ["run", "--config", str(bad_yaml)], 2, "line"))
    for label, extra, args, code, says in cases:
        got, lines = _run({**env, **extra}, *args)
        assert got == code, f"{label}: exit {got}"
        assert len(lines) == 1 and says in lines[0], f"{label}: {lines}"
        row.notes.append(f"{label}: exit {code}, `{lines[0].replace(str(tmp_path) + '/', '')}`")
    assert API_KEY not in " ".join(row.notes)

    # Records: a 10 MB record and one with 10,000 `values` entries become dead letters, and
    # the valid record after them is delivered.
    big = {"customerId": "c", "meterApiName": "chaos-big", "meterValue": 1, "dimensions": {}}
    big["dimensions"] = {"blob": "x" * 10_000_000}
    many = {"customerId": "c", "values": {f"m{i}": 1 for i in range(10_000)}}
    ok = {"customerId": "c", "meterApiName": "chaos-ok", "meterValue": 3}
    produce_raw(
        c.kafka,
        c.topic,
        [
            {"key": k, "value": orjson.dumps(v)}
            for k, v in ((b"big", big), (b"many", many), (b"ok", ok))
        ],
        max_bytes=16 * 1024 * 1024,
    )
    c.start()
    wait_until(lambda: c.api.totals("chaos-ok") == {("chaos-ok", "c"): 3}, 60, "the valid record")
    letters = c.dead_letters(expect=2)
    assert Counter(m.key() for m in letters) == {b"big": 1, b"many": 1}
    for m in letters:
        h = {k: (v or b"").decode() for k, v in m.headers() or []}
        message = h["amberflo.error.message"]
        row.notes.append(
            f"{m.key().decode()} record: dead letter, stage {h['amberflo.error.stage']}, "
            f"{h['amberflo.error.class']}: {message[:100]}{'…' if len(message) > 100 else ''}"
        )
    row.dead_letters = len(letters)
    row.faults.append("4 bad configurations, a 10 MB record, a record with 10,000 values")
    assert c.procs[0].proc.poll() is None, "the connector kept running"
    shown = {
        labels["stage"]: v
        for labels, v in scrape(c.ports[0]).get("amberflo_connector_dead_letters_total", [])
    }
    assert shown == {"sink": 1, "transform": 1}, shown
