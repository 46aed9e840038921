"""The delivery contract end to end: real broker, real emulator, the real connector process."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable

import pytest

from tests.conftest import Emulator
from tests.integration.harness import (
    ConnectorProcess,
    Emu,
    committed,
    connector_env,
    expected_totals,
    produce,
    read_all,
    usage_records,
    wait_until,
)


@pytest.fixture
def start(
    kafka_broker: str, amberflo_emulator: Emulator, connectors: Callable[..., ConnectorProcess]
) -> Callable[..., ConnectorProcess]:
    def _start(
        topic: str, group: str, args: list[str] | None = None, **extra: str
    ) -> ConnectorProcess:
        env = connector_env(
            kafka_broker,
            topic,
            amberflo_emulator.base_url,
            amberflo_emulator.api_key,
            group,
            **extra,
        )
        return connectors(env, args)

    return _start


def meter() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def test_every_record_counted_once_and_bad_ones_dead_lettered(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(4), meter()
    good = usage_records(m, 3000, value=lambda i: (i % 7) + 0.5)
    bad: list[object] = [b"not json {", {"meterApiName": m, "meterValue": 1}, [1, 2, 3]]
    produce(kafka_broker, topic, [*good[:1500], *bad, *good[1500:]])
    group = f"g-{m}"
    proc = start(topic, group)
    wait_until(lambda: emu.count(m) >= 3000, 60, "3000 events stored")
    assert emu.totals(m) == pytest.approx(expected_totals(good))
    dead = read_all(kafka_broker, f"{topic}.dlq", 3)
    assert len(dead) == 3
    stages = sorted(dict(msg.headers())["amberflo.error.stage"].decode() for msg in dead)
    assert stages == ["decode", "transform", "transform"]
    wait_until(
        lambda: sum(committed(kafka_broker, group, topic, 4).values()) == 3003,
        15,
        "every offset committed",
    )
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert emu.count(m) == 3000  # nothing more appeared


def test_kill_9_and_restart_counts_exactly_once(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(4), meter()
    records = usage_records(m, 20_000)
    produce(kafka_broker, topic, records)
    group = f"g-{m}"
    dup_before = emu.stats()["duplicates"]
    # A long commit interval guarantees ingested-but-uncommitted work at the moment of the kill,
    # and 20 ms per request (100 events) that the kill lands mid-stream however fast the
    # machine is: 20,000 events take 4 s at least.
    with emu.slowed_ingest(latency_ms=20, requests=200):
        first = start(
            topic,
            group,
            CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="4000",
            CONNECTOR_SINK__BATCH_SIZE="100",
            CONNECTOR_SINK__MAX_IN_FLIGHT="1",
        )
        wait_until(lambda: emu.count(m) >= 3000, 60, "some events stored")
        first.kill()
    stored_at_kill = emu.count(m)
    assert stored_at_kill < 20_000
    start(topic, group)
    wait_until(
        lambda: (
            emu.count(m) >= 20_000
            and sum(committed(kafka_broker, group, topic, 4).values()) == 20_000
        ),
        90,
        "all events stored",
    )
    time.sleep(1)
    assert emu.count(m) == 20_000
    assert emu.totals(m) == pytest.approx(expected_totals(records))
    assert emu.stats()["duplicates"] > dup_before  # the replayed overlap was discarded


def test_outage_commits_nothing_unstored_then_recovers(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(4), meter()
    records = usage_records(m, 4000)
    group = f"g-{m}"
    produce(kafka_broker, topic, records[:1000])
    proc = start(topic, group, CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="200")
    wait_until(lambda: emu.count(m) == 1000, 60, "first 1000 stored")
    emu.fault(status=503, count=25, retry_after=0, path="/ingest")
    produce(kafka_broker, topic, records[1000:])
    for _ in range(20):  # during the outage, committed offsets never exceed what is stored
        done = sum(max(o, 0) for o in committed(kafka_broker, group, topic, 4).values())
        assert done <= emu.count(m)
        time.sleep(0.1)
    wait_until(lambda: emu.count(m) == 4000, 90, "all stored after the outage")
    assert emu.totals(m) == pytest.approx(expected_totals(records))
    emu.clear_faults()
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert sum(committed(kafka_broker, group, topic, 4).values()) == 4000


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_two_workers_split_partitions_and_one_stops(
    strategy: str,
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(4), meter()
    records = usage_records(m, 30_000, customers=7)
    group = f"g-{m}"
    opts = {
        "CONNECTOR_SINK__MAX_IN_FLIGHT": "1",
        "CONNECTOR_SINK__BATCH_SIZE": "200",
        "CONNECTOR_KAFKA__ASSIGNMENT_STRATEGY": strategy,
    }
    a = start(topic, group, **opts)
    b = start(topic, group, **opts)
    wait_until(  # both joined (a fixed 4 s sleep was not always enough on a loaded machine)
        lambda: "assigned" in a.output() and "assigned" in b.output(), 60, "both assigned"
    )
    produce(kafka_broker, topic, records)
    wait_until(lambda: emu.count(m) >= 5000, 60, "some events stored")
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0
    wait_until(lambda: emu.count(m) >= 30_000, 90, "all events stored")
    assert "assigned" in a.output() and "assigned" in b.output()
    time.sleep(1)
    assert emu.count(m) == 30_000
    assert emu.totals(m) == pytest.approx(expected_totals(records))


def test_sigterm_under_load_exits_zero_and_restart_resumes(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(4), meter()
    records = usage_records(m, 30_000)
    produce(kafka_broker, topic, records)
    group = f"g-{m}"
    # Backpressure keeps at most 1000 records in the process, and 20 ms per request (100
    # events) makes 30,000 take 6 s at least, so the stop interrupts the stream.
    with emu.slowed_ingest(latency_ms=20, requests=300):
        first = start(
            topic,
            group,
            CONNECTOR_SINK__MAX_IN_FLIGHT="1",
            CONNECTOR_SINK__BATCH_SIZE="100",
            CONNECTOR_SINK__MAX_BUFFERED_RECORDS="1000",
        )
        wait_until(lambda: emu.count(m) >= 2000, 60, "some events stored")
        t0 = time.monotonic()
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0
        assert time.monotonic() - t0 < 12  # CONNECTOR_SHUTDOWN_TIMEOUT_S=10 in the harness
    done = sum(max(o, 0) for o in committed(kafka_broker, group, topic, 4).values())
    stored = emu.count(m)
    assert 0 < done <= stored < 30_000
    start(topic, group)
    wait_until(lambda: emu.count(m) >= 30_000, 90, "all events stored")
    time.sleep(1)
    assert emu.count(m) == 30_000
    assert emu.totals(m) == pytest.approx(expected_totals(records))


def test_workers_flag_runs_processes_in_one_group(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(4), meter()
    records = usage_records(m, 10_000)
    produce(kafka_broker, topic, records)
    parent = start(topic, f"g-{m}", args=["--workers", "2"])
    wait_until(lambda: emu.count(m) >= 10_000, 90, "all events stored")
    wait_until(lambda: parent.output().count("assigned") >= 2, 30, "both workers assigned")
    parent.signal(signal.SIGTERM)
    assert parent.wait(40) == 0
    assert parent.output().count("stopped") == 2  # the signal reached both children
    assert emu.totals(m) == pytest.approx(expected_totals(records))


def test_workers_flag_fails_when_a_child_fails(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    start: Callable[..., ConnectorProcess],
) -> None:
    parent = start(
        topic_factory(1), "g-bad", args=["--workers", "2"], CONNECTOR_AMBERFLO__API_KEY="wrong"
    )
    assert parent.wait(60) != 0
    assert "rejected the API key" in parent.output()
