"""Chaos scenarios 1 and 8: the worker dies (kill -9) or is stopped (SIGTERM) while events
flow, and is started again each time; and the comparison rows, scenarios 1 and 5 against a
consumer loop on the official Amberflo SDK.

Each asserts from the emulator's usage totals that nothing was lost or counted twice, and
from the connector's /metrics what an operator saw.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.chaos.flows import SLOW, interrupt_while_flowing, kill_while_flowing
from tests.chaos.harness import FULL, Chaos, Row, scale
from tests.chaos.workload import T0, Workload
from tests.integration.failure_harness import scrape
from tests.integration.harness import wait_until

# Full sizes (make chaos) take minutes per scenario; pytest's default cap is 300 s.
pytestmark = pytest.mark.timeout(scale(300, 1200))


def caught_up(c: Chaos, slot: int = 0) -> bool:
    """The worker's gauges say it is done: every partition's lag and oldest age are 0."""
    got = scrape(c.ports[slot])
    lag = got.get("amberflo_connector_consumer_lag", [])
    age = got.get("amberflo_connector_oldest_unfinished_age_seconds", [])
    return len(lag) == c.partitions and all(v == 0 for _l, v in lag + age)


def test_s1_kill9(chaos: Callable[..., Chaos], row: Row) -> None:
    """1. kill -9 the worker at random points while events flow; restart each time."""
    n, kills = scale(20_000, 200_000), scale(2, 5)
    c = chaos()
    w = Workload(n)
    row.events = n
    c.api.fault(latency_ms=100, count=1_000_000, path="/ingest")
    c.start(**SLOW)
    kill_while_flowing(c, w, kills, lambda: c.start(**SLOW))
    c.api.clear_faults()
    c.wait_stored(w.valid, scale(60, 180))
    c.assert_exact(w.expected(), w.meters)
    wait_until(lambda: caught_up(c), 30, "lag 0 and nothing unfinished on /metrics")
    assert c.dead_letters() == []


def test_s8_sigterm(chaos: Callable[..., Chaos], row: Row) -> None:
    """8. SIGTERM under load, again and again: each exit 0 within the shutdown timeout."""
    n, stops = scale(15_000, 100_000), scale(3, 10)
    c = chaos()
    w = Workload(n)
    row.events = n
    c.api.fault(latency_ms=100, count=1_000_000, path="/ingest")
    took: list[float] = []

    def sigterm(k: int) -> None:
        code, seconds = c.terminate(timeout=30)
        assert code == 0, f"SIGTERM {k + 1}: exit {code}\n{c.procs[0].output()[-2000:]}"
        assert seconds <= 10 + 2, f"SIGTERM {k + 1} took {seconds:.1f}s (shutdown timeout 10s)"
        took.append(seconds)
        stopped = time.monotonic()
        c.start(**SLOW)
        c.ready()  # what it had consumed is done and committed: it resumes after that
        row.recover_s.append(round(time.monotonic() - stopped, 1))

    c.start(**SLOW)
    interrupt_while_flowing(c, w, stops, sigterm)
    row.faults.append(f"SIGTERM ×{stops} (exit 0 each, {max(took):.1f}s at most)")
    c.api.clear_faults()
    c.wait_stored(w.valid, scale(60, 120))
    c.assert_exact(w.expected(), w.meters)
    assert c.dead_letters() == []


@pytest.mark.skipif(not FULL, reason="the SDK comparison rows run in make chaos only")
@pytest.mark.parametrize("scenario", ["s1", "s5"])
def test_sdk_loop(chaos: Callable[..., Chaos], row: Row, scenario: str) -> None:
    """The same as scenario 1 (or 5, with 1% poison), with a consumer loop built on the
    official Amberflo SDK instead of the connector: a comparison row, not a pass/fail test."""
    n, kills = 200_000, 5
    c = chaos()
    w = Workload(n, poison_every=100 if scenario == "s5" else 0)
    row.sdk, row.events = True, n
    row.title = {
        "s1": "1. kill -9 at random points while events flow, with the SDK loop",
        "s5": "5. 1% poison of every kind with kill -9, with the SDK loop",
    }[scenario]
    c.start_sdk_loop()  # no slowed /ingest here: the SDK's loop is slower than the faults
    kill_while_flowing(c, w, kills, c.start_sdk_loop, exact=False)  # it stores duplicates
    stable, last = 0, -1
    while stable < 10:  # until nothing new is stored for 10 s
        time.sleep(1)
        now = c.stored()
        stable, last = (stable + 1 if now == last else 0), now
    seen: Counter[int] = Counter()
    after = 0
    while True:
        page = c.api.s.get(
            f"{c.api.base_url}/_emulator/records", params={"after_id": after, "limit": 10_000}
        ).json()
        seen.update(r["meterTimeInMillis"] - T0 for r in page["records"])
        if not page["records"]:
            break
        after = page["next_after_id"]
    valid = {i for i in range(n) if w.kind(i) is None}
    row.lost = len(valid - set(seen))
    row.counted_twice = sum(k - 1 for i, k in seen.items() if i in valid and k > 1)
    row.notes.append(
        f"stored {sum(seen.values()):,} events for {w.valid:,} valid records: "
        f"{row.lost:,} lost, {row.counted_twice:,} counted twice"
    )
    assert seen, "the SDK loop stored nothing: the comparison did not run"
