"""What an operator sees while Amberflo is down: the real connector process, the real broker
and the real emulator, /metrics scraped during the fault and after recovery.

Tansu's high watermarks are wrong (start of the last batch + 1, see
shared notes), so on this broker the lag gauge can only be checked for being above 0 while
records wait and 0 once all is committed; its exact value is librdkafka's own and right on
real Kafka.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from connector.embedded import FAST_GROUP, free_port
from tests.conftest import Emulator
from tests.integration.failure_harness import produce_raw, scrape
from tests.integration.harness import ConnectorProcess, Emu, connector_env, wait_until

HOUR_MS = 3_600_000
Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture
def emu(amberflo_emulator: Emulator) -> Iterator[Emu]:
    e = Emu(amberflo_emulator.base_url, amberflo_emulator.api_key)
    yield e
    e.clear_faults()


def _values(samples: Samples, name: str) -> list[float]:
    return [v for _labels, v in samples.get(f"amberflo_connector_{name}", [])]


def _one(samples: Samples, name: str) -> float:
    (value,) = _values(samples, name) or [float("nan")]
    return value


def test_outage_shows_in_lag_age_guard_and_last_ingest_then_recovers(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    amberflo_emulator: Emulator,
    emu: Emu,
    tmp_path: Path,
) -> None:
    # Records 100 minutes old on a topic keeping 2 hours: 83% of the retention is used up
    # while they wait, past the 80% critical line.
    topic = topic_factory(2, config={"retention.ms": str(2 * HOUR_MS)})
    meter = f"m-{uuid.uuid4().hex[:8]}"
    stamp = int(time.time() * 1000) - 100 * 60_000
    emu.fault(status=503, count=1_000_000, path="/ingest")
    produce_raw(
        kafka_broker,
        topic,
        [
            {
                "value": orjson.dumps(
                    {"customerId": f"c{i % 3}", "meterApiName": meter, "meterValue": 1}
                ),
                "partition": i % 2,
                "timestamp": stamp + i,
            }
            for i in range(200)
        ],
    )
    port = free_port()
    env = connector_env(
        kafka_broker,
        topic,
        amberflo_emulator.base_url,
        amberflo_emulator.api_key,
        f"g-{meter}",
        CONNECTOR_METRICS_PORT=str(port),
        CONNECTOR_KAFKA__CONSUMER=json.dumps({**FAST_GROUP, "statistics.interval.ms": 500}),
        # The sink's per-attempt warnings are silenced by a per-logger level; the guard's
        # lines still come.
        CONNECTOR_LOG__LEVELS='{"connector.sink": "ERROR"}',
    )
    started = time.time()
    proc = ConnectorProcess(env, tmp_path / "connector.log")
    try:
        during: Samples = {}

        def outage_visible() -> bool:
            nonlocal during
            during = scrape(port)
            return (
                _one(during, "retention_guard") == 2
                and sum(_values(during, "consumer_lag")) > 0
                and _one(during, "ingest_backing_off") >= 1
            )

        wait_until(outage_visible, 40, "lag, backing-off and the critical guard on /metrics")
        assert min(_values(during, "oldest_unfinished_age_seconds")) >= 100 * 60 - 5
        assert min(_values(during, "retention_used_ratio")) > 0.8
        assert _one(during, "paused") == 1
        # No ingest since the worker started: the gauge still holds its start time.
        assert started <= _one(during, "last_ingest_timestamp_seconds") < started + 30
        assert _one(during, "delivery_delay_seconds_count") == 0
        assert emu.count(meter) == 0
        wait_until(lambda: "retention guard critical" in proc.output(), 10, "the guard's line")
        assert f"{topic}[0] is 1.7 h old, 8" in proc.output()
        assert "ingest attempt" not in proc.output(), "connector.sink is at ERROR"

        cleared = time.time()
        emu.clear_faults()
        wait_until(lambda: emu.count(meter) == 200, 30, "all 200 stored")
        after: Samples = {}

        def recovered() -> bool:
            nonlocal after
            after = scrape(port)
            return (
                _one(after, "retention_guard") == 0
                and _values(after, "consumer_lag") == [0, 0]
                and _one(after, "last_commit_timestamp_seconds") >= cleared
            )

        wait_until(recovered, 30, "lag 0, guard ok and a fresh commit on /metrics")
        assert _values(after, "oldest_unfinished_age_seconds") == [0, 0]
        assert _one(after, "last_ingest_timestamp_seconds") >= cleared
        assert _one(after, "delivery_delay_seconds_count") >= 1
        delay = _one(after, "delivery_delay_seconds_sum") / _one(
            after, "delivery_delay_seconds_count"
        )
        assert 100 * 60 <= delay < 100 * 60 + 120, "ack time minus the records' timestamps"
        assert "retention guard: " in proc.output() and "is back to ok" in proc.output()
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        proc.close()
