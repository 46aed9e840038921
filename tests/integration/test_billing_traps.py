"""Ways a user could make the connector count twice, duplicate or lose a dead letter, or stop:
each scenario end to end with the real connector process, the real broker and the emulator."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import requests
from confluent_kafka.admin import AdminClient, NewTopic

from connector.embedded import free_port
from tests.conftest import Emulator
from tests.integration.failure_harness import (
    header,
    metric,
    produce_raw,
    read_topic,
    wait_for_records,
)
from tests.integration.harness import ConnectorProcess, Emu, committed, connector_env, wait_until
from tests.integration.kafka_gate import CREATE_TOPICS, locked_down

T0 = 1_767_225_600_000
SHORT_GROUP = '{"session.timeout.ms": 2000, "heartbeat.interval.ms": 200}'
"""Joins (and a killed member's partitions moving) take about the session timeout on Tansu."""


@pytest.fixture
def start(
    kafka_broker: str,
    amberflo_emulator: Emulator,
    connectors: Callable[..., ConnectorProcess],
    emu: Emu,
) -> Iterator[Callable[..., ConnectorProcess]]:
    def _start(
        topics: str, group: str, bootstrap: str = kafka_broker, **extra: str
    ) -> ConnectorProcess:
        extra.setdefault("CONNECTOR_KAFKA__CONSUMER", SHORT_GROUP)
        env = connector_env(
            bootstrap, topics, amberflo_emulator.base_url, amberflo_emulator.api_key, group, **extra
        )
        return connectors(env)

    yield _start
    emu.clear_faults()


def meter() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def event(m: str, i: int, **over: object) -> bytes:
    record = {
        "customerId": f"c{i % 3}",
        "meterApiName": m,
        "meterValue": 1,
        "meterTimeInMillis": T0 + i,
    }
    return orjson.dumps({**record, **over})


def connector_lines(proc: ConnectorProcess) -> list[str]:
    return [line for line in proc.output().splitlines() if line.startswith("amberflo-connector:")]


def test_locked_down_cluster_needs_no_create_for_an_existing_dlq_topic(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """Behind a gate that denies CreateTopics like an ACL would: a missing DLQ topic stops the
    start with one line naming it and the permission; once it exists, the connector starts
    without asking to create anything and dead-letters into it."""
    topic, m = topic_factory(1), meter()
    produce_raw(kafka_broker, topic, [{"value": event(m, 0)}, {"value": b"not json"}])
    with locked_down(kafka_broker) as gate:
        bootstrap = f"127.0.0.1:{gate.port}"
        first = start(topic, f"g-{m}", bootstrap)
        assert first.wait(60) == 1
        assert connector_lines(first) == [
            f"amberflo-connector: dead-letter topic '{topic}.dlq' does not exist and the "
            "connector is not allowed to create it (Authorization failed.): create it "
            f"beforehand, or grant CREATE on topic '{topic}.dlq' (or on the cluster)"
        ]
        assert "Traceback" not in first.output()
        assert gate.denied == [f"{topic}.dlq"]

        admin = AdminClient({"bootstrap.servers": kafka_broker})
        admin.create_topics([NewTopic(f"{topic}.dlq", 1)])[f"{topic}.dlq"].result(10)
        gate.seen.clear()
        second = start(topic, f"g-{m}", bootstrap)
        dead = wait_for_records(kafka_broker, f"{topic}.dlq", 1)
        wait_until(lambda: emu.count(m) == 1, 30, "the good record stored")
        wait_until(lambda: committed(kafka_broker, f"g-{m}", topic, 1)[0] == 2, 15, "committed")
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    assert [d.value() for d in dead] == [b"not json"]
    assert CREATE_TOPICS not in gate.seen
    assert len(read_topic(kafka_broker, f"{topic}.dlq", expect=1)) == 1


def test_readyz_fails_while_amberflo_is_unreachable_and_healthz_stays_up(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(1), meter()
    port = free_port()
    proc = start(
        topic, f"g-{m}", CONNECTOR_METRICS_PORT=str(port), CONNECTOR_SINK__READINESS_TIMEOUT_S="1"
    )
    wait_until(lambda: probe(port, "/readyz") == (200, "ready"), 30, "ready")
    emu.fault(status=502, count=100_000, path="/ingest")
    produce_raw(kafka_broker, topic, [{"value": event(m, 0)}])
    wait_until(lambda: probe(port, "/readyz")[0] == 503, 30, "unready during the outage")
    _status, body = probe(port, "/readyz")
    assert body.startswith("not ready: Amberflo unreachable for ")
    assert probe(port, "/healthz") == (200, "ok")
    emu.clear_faults()
    wait_until(lambda: emu.count(m) == 1, 30, "stored once Amberflo answers")
    assert probe(port, "/readyz") == (200, "ready")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        resp = requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except requests.RequestException:
        return 0, ""
    return resp.status_code, resp.text.strip()


def test_a_pattern_subscription_never_reads_dead_letter_topics(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
    amberflo_emulator: Emulator,
) -> None:
    """`^pat-<id>-` with poison records and a record Amberflo refused once: the DLQ topic
    (which the pattern would match) is never read, no `*.dlq.dlq` topic appears, a topic
    created later is picked up, and after `dlq replay` every record is counted exactly once."""
    prefix = f"pat-{uuid.uuid4().hex[:8]}"
    a, m = topic_factory(1, prefix=prefix), meter()
    group = f"g-{m}"
    fast = {  # librdkafka's own pattern refresh as fast as ours, so main would fail quickly
        "CONNECTOR_KAFKA__CONSUMER": orjson.dumps(
            {**orjson.loads(SHORT_GROUP), "topic.metadata.refresh.interval.ms": 1000}
        ).decode(),
        "CONNECTOR_KAFKA__PATTERN_REFRESH_S": "1",
        "CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": "200",
    }
    proc = start(f"^{prefix}-", group, **fast)
    wait_until(lambda: "assigned" in proc.output(), 30, "partitions assigned")
    emu.fault(status=400, count=1, path="/ingest")  # the next request is refused once
    produce_raw(kafka_broker, a, [{"value": event(m, 0, meterValue=7)}])
    wait_for_records(kafka_broker, f"{a}.dlq", 1)
    good = [event(m, i) for i in range(1, 11)]
    poison = [b"not json", orjson.dumps({"meterApiName": m})]
    produce_raw(kafka_broker, a, [{"value": v} for v in good[:5] + poison + good[5:]])
    wait_for_records(kafka_broker, f"{a}.dlq", 3)
    wait_until(lambda: emu.count(m) >= 10, 30, "the good records stored")

    b = topic_factory(1, prefix=prefix)  # created after the DLQ topic: picked up
    produce_raw(kafka_broker, b, [{"value": event(m, i)} for i in range(11, 16)])
    wait_until(lambda: emu.count(m) >= 15, 30, "the later topic's records stored")

    env = connector_env(
        kafka_broker, f"^{prefix}-", amberflo_emulator.base_url, amberflo_emulator.api_key, group
    )
    replay = subprocess.run(
        [sys.executable, "-m", "connector", "dlq", "replay", "--topic", f"{a}.dlq", "--wait", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.startswith("republished 3 of 3 dead letters read")
    wait_until(lambda: emu.count(m) >= 16, 30, "the replayed record stored")
    wait_until(lambda: committed(kafka_broker, group, a, 1)[0] == 16, 30, "all of a committed")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert emu.count(m) == 16
    assert emu.totals(m) == {(m, "c0"): 12, (m, "c1"): 5, (m, "c2"): 5}  # record 0 (c0) is 7
    names = AdminClient({"bootstrap.servers": kafka_broker}).list_topics(timeout=10).topics
    assert not [t for t in names if t.startswith(prefix) and t.endswith(".dlq.dlq")]
    assert f"{b}.dlq" not in names
    assert len(read_topic(kafka_broker, f"{a}.dlq", expect=5)) == 5  # 3, then the 2 poison again


def test_a_renamed_group_rereads_history_without_counting_it_again(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """Group A consumes a topic; group B reads it again from the start: Amberflo's totals do
    not move (same uniqueIds). The topic deleted and recreated with the same records at the
    same offsets is another incarnation (its topic id differs): counted, not discarded."""
    topic, m = topic_factory(2), meter()
    records = [event(m, i, meterValue=i % 4 + 1) for i in range(200)]
    produce_raw(
        kafka_broker, topic, [{"value": v, "partition": i % 2} for i, v in enumerate(records)]
    )
    expected = {(m, f"c{c}"): float(sum(i % 4 + 1 for i in range(c, 200, 3))) for c in range(3)}

    def drain(group: str) -> None:
        proc = start(topic, group)
        wait_until(lambda: sum(committed(kafka_broker, group, topic, 2).values()) == 200, 60, group)
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    drain(f"a-{m}")
    assert emu.count(m) == 200 and emu.totals(m) == expected
    duplicates = emu.stats()["duplicates"]
    drain(f"b-{m}")
    assert emu.count(m) == 200 and emu.totals(m) == expected
    assert emu.stats()["duplicates"] - duplicates >= 200  # all of them sent, all discarded

    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.delete_topics([topic])[topic].result(10)
    wait_until(lambda: topic not in admin.list_topics(timeout=5).topics, 10, "topic deleted")
    admin.create_topics([NewTopic(topic, 2)])[topic].result(10)
    produce_raw(
        kafka_broker, topic, [{"value": v, "partition": i % 2} for i, v in enumerate(records)]
    )
    drain(f"c-{m}")
    assert emu.count(m) == 400  # a new incarnation: new ids, nothing collides with the old one


def test_kill_9_three_times_during_a_drain_leaves_one_dead_letter_per_poison_record(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """2,000 records with 1% poison over 4 partitions; the connector is SIGKILLed three times
    mid-drain, each time with dead letters written but not committed past (commits every
    3 s), and restarted: the DLQ holds exactly one letter per poison record, totals exact."""
    topic, m = topic_factory(4), meter()
    group = f"g-{m}"
    poison = {i for i in range(2000) if i % 99 == 50}  # 20, over every partition
    values = [b"not json %d" % i if i in poison else event(m, i) for i in range(2000)]
    produce_raw(
        kafka_broker, topic, [{"value": v, "partition": i % 4} for i, v in enumerate(values)]
    )
    opts = {
        "CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": "3000",
        "CONNECTOR_SINK__BATCH_SIZE": "20",
        "CONNECTOR_SINK__MAX_IN_FLIGHT": "1",
    }
    found = "already has a dead letter"
    with emu.slowed_ingest(latency_ms=100, requests=400):  # 10 s for a pass over the topic
        for run in range(3):
            before = emu.count(m)
            proc = start(topic, group, **opts)
            if run == 0:  # every poison record dead-lettered (they come in the first polls)
                assert len(wait_for_records(kafka_broker, f"{topic}.dlq", len(poison))) == 20
            else:  # the restarted worker re-read them, and found their letters
                wait_until(lambda p=proc: found in p.output(), 30, "a letter found")
            wait_until(lambda n=before: emu.count(m) >= n + 100, 60, "100 more events stored")
            proc.kill()
    assert emu.count(m) < 1980
    last = start(topic, group, **opts)
    wait_until(
        lambda: sum(committed(kafka_broker, group, topic, 4).values()) == 2000, 90, "all committed"
    )
    last.signal(signal.SIGTERM)
    assert last.wait(30) == 0
    assert emu.count(m) == 1980
    dead = read_topic(kafka_broker, f"{topic}.dlq", expect=len(poison))
    sources = sorted(
        int(header(d, "amberflo.source.offset") or -1) * 4
        + int(header(d, "amberflo.source.partition") or -1)
        for d in dead
    )
    assert sources == sorted(poison)  # each poison record once: offset*4+partition = its index


def test_memory_stays_bounded_when_records_expand_into_many_events(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """250 records of 1,000 meters each (250,000 events, far under the records limit) behind
    a slow Amberflo: the worker holds at most CONNECTOR_SINK__MAX_BUFFERED_EVENTS of them (plus
    a record and a batch), and its memory stays flat instead of holding every event."""
    topic, m = topic_factory(1), meter()
    values = {f"{m}-{k}": 1 for k in range(1000)}
    big = [
        orjson.dumps({"customerId": "c", "values": values, "meterTimeInMillis": T0 + i})
        for i in range(250)
    ]
    produce_raw(kafka_broker, topic, [{"value": v} for v in big])
    port = free_port()
    limit = 20_000
    with emu.slowed_ingest(latency_ms=500, requests=1000):
        proc = start(
            topic,
            f"g-{m}",
            CONNECTOR_METRICS_PORT=str(port),
            CONNECTOR_SINK__MAX_BUFFERED_EVENTS=str(limit),
        )
        wait_until(
            lambda: (metric(port, "amberflo_connector_buffered_events") or 0) > 0, 30, "held"
        )
        peak_rss, peak_events = 0, 0.0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, rss_mb(proc.proc.pid))
            peak_events = max(peak_events, metric(port, "amberflo_connector_buffered_events") or 0)
            time.sleep(0.1)
        assert metric(port, "amberflo_connector_paused") == 1.0
        proc.kill()  # a clean stop would wait for the slowed batches in flight
    assert peak_events <= limit + 1000 + 500  # one record and one batch beyond the limit
    assert peak_rss < 140, peak_rss  # 94 MB measured; holding every event took 190-220 MB


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0
