"""Chaos scenarios 2, 3 and 6: Amberflo answers 503 or is down, the link to the broker is cut,
Amberflo throttles with 429 storms, all while events keep arriving.

Each asserts that the outage showed while it lasted (lag, no ingest, retries, readiness) and,
from the emulator's totals, that nothing was lost or counted twice once it was over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from tests.chaos.harness import Chaos, Row, scale
from tests.chaos.network import BrokerLink
from tests.chaos.workload import Feeder, Workload
from tests.integration.harness import wait_until

# Full sizes (make chaos) take minutes per scenario; pytest's default cap is 300 s.
pytestmark = pytest.mark.timeout(scale(300, 1200))


def during(c: Chaos, since: float, name: str) -> list[float]:
    return c.sampler.values(name, since=since)


def test_s2_sink_outage(chaos: Callable[..., Chaos], row: Row) -> None:
    """2. Amberflo down: 503 with and without Retry-After, then stopped and restarted."""
    fault_s, stop_s = scale(4, 20), scale(3, 10)
    c = chaos()
    n = scale(20_000, 100_000)
    w = Workload(n)
    row.events = n
    feeder = Feeder(c.kafka, c.topic, w, rate=n / (2 * fault_s + stop_s + 10))
    feeder.start()
    c.start(CONNECTOR_SINK__READINESS_TIMEOUT_S="2")
    c.ready()
    c.wait_stored(1, 30)
    port = c.ports[0]
    for label, retry_after in (("503 with Retry-After: 1", 1.0), ("503 without Retry-After", None)):
        start, wall = time.monotonic(), time.time()
        c.api.fault(status=503, count=1_000_000, path="/ingest", retry_after=retry_after)
        time.sleep(fault_s)
        seen = c.sampler.samples[-1][2]
        lag = sum(v for _l, v in seen.get("amberflo_connector_consumer_lag", []))
        (last_ingest,) = [v for _l, v in seen["amberflo_connector_last_ingest_timestamp_seconds"]]
        assert lag > 0, f"{label}: lag does not show the waiting records"
        assert last_ingest < wall + 1, f"{label}: an ingest was recorded during the outage"
        assert max(during(c, start, "ingest_backing_off")) >= 1
        assert max(during(c, start, "paused")) == 1
        c.api.clear_faults()
        c.recovered_since(time.monotonic())
        row.faults.append(f"{label} for {fault_s}s")

    start = time.monotonic()
    c.stop_emulator()
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 503,
        stop_s + 5,
        "/readyz 503 while Amberflo refuses connections",
    )
    time.sleep(max(0.0, stop_s - (time.monotonic() - start)))
    assert max(during(c, start, "ingest_backing_off")) >= 1
    c.start_emulator()
    c.recovered_since(time.monotonic())
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200,
        30,
        "/readyz 200 again",
    )
    row.faults.append(f"emulator stopped {stop_s}s (connection refused), restarted on its database")
    feeder.finish()
    c.wait_stored(w.valid, scale(60, 180))
    c.assert_exact(w.expected(), w.meters)
    assert c.dead_letters() == []


def test_s3_broker_link_cut(chaos: Callable[..., Chaos], row: Row) -> None:
    """3. The connector's link to the broker cut: refused connections, then a black hole."""
    cut_s = scale(4, 10)
    c = chaos()
    n = scale(15_000, 100_000)
    w = Workload(n)
    row.events = n
    with BrokerLink(c.kafka) as link:
        feeder = Feeder(c.kafka, c.topic, w, rate=n / (2 * cut_s + 20))
        feeder.start()
        c.start(bootstrap=link.bootstrap)
        c.ready()
        c.wait_stored(1, 30)
        for mode in ("refuse", "blackhole"):
            start, wall = time.monotonic(), time.time()
            getattr(link.proxy, mode)()
            time.sleep(cut_s)
            seen = c.sampler.samples[-1][2]
            (last_commit,) = [
                v for _l, v in seen["amberflo_connector_last_commit_timestamp_seconds"]
            ]
            assert last_commit < wall + 2, f"{mode}: commits went on during the cut"
            consumed = during(c, start + 2, "records_consumed_total")
            assert consumed and max(consumed) == min(consumed), f"{mode}: consumption went on"
            link.proxy.up()
            c.recovered_since(time.monotonic())
            row.faults.append(f"broker link {'refused' if mode == 'refuse' else mode} for {cut_s}s")
        feeder.finish()
        c.wait_stored(w.valid, scale(90, 180))
    c.assert_exact(w.expected(), w.meters)
    assert c.dead_letters() == []


def test_s6_429_storms(chaos: Callable[..., Chaos], row: Row) -> None:
    """6. 429 storms with Retry-After: honoured, nothing dead-lettered."""
    storms, per_storm, retry_after = scale(2, 3), scale(8, 24), 1.0
    c = chaos()
    n = scale(15_000, 60_000)
    w = Workload(n)
    row.events = n
    feeder = Feeder(c.kafka, c.topic, w, rate=scale(2000, 4000))
    feeder.start()
    c.start(CONNECTOR_SINK__RETRY_MAX_S="2")
    c.ready()
    c.wait_stored(1, 30)
    throttled = 0
    for _ in range(storms):
        start = time.monotonic()
        c.api.fault(status=429, count=per_storm, path="/ingest", retry_after=retry_after)
        throttled += per_storm
        wait_until(
            lambda t=throttled: c.api.stats()["requests"].get("429", 0) >= t,
            per_storm * 2 + 30,
            "the storm's 429s answered",
        )
        took = time.monotonic() - start
        # At most max_in_flight (4) requests wait at once, each at least Retry-After.
        least = (per_storm / 4 - 1) * retry_after
        assert took >= least, f"{per_storm} 429s in {took:.1f}s: Retry-After {retry_after}s ignored"
        assert max(during(c, start, "ingest_backing_off")) >= 1
        assert max(during(c, start, "paused")) == 1
        c.recovered_since(time.monotonic())
        row.notes.append(f"{per_storm} 429s took {took:.1f}s (Retry-After floor {least:.0f}s)")
    row.faults.append(f"{storms} storms of {per_storm} × 429 with Retry-After: {retry_after:.0f}")
    feeder.finish()
    c.wait_stored(w.valid, scale(60, 120))
    c.assert_exact(w.expected(), w.meters)
    assert c.dead_letters() == [], "throttling never dead-letters"
    assert c.api.stats()["requests"].get("429", 0) == throttled
