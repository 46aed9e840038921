"""Avro end to end: the real connector process reads records written by Confluent's own
``AvroSerializer`` through the local Schema Registry (real HTTP), maps them by rules, and
delivers them to the emulator; bad records are dead-lettered, a registry that is down is
waited for and never dead-letters anything, and a ``kill -9`` still counts exactly once."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.local_registry import LocalSchemaRegistry
from tests.conftest import Emulator
from tests.integration.failure_harness import QUICK_GROUP, header, read_topic
from tests.integration.harness import (
    ConnectorProcess,
    Emu,
    committed,
    connector_env,
    produce,
    wait_until,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
V1 = json.loads((SCHEMAS / "usage_event.avsc").read_text())
V2 = {**V1, "fields": [*V1["fields"], {"name": "plan", "type": "string", "default": "free"}]}
T0 = 1_767_225_600_000


def mapping(topics: list[str], fmt: str = "avro", **extra: Any) -> dict[str, Any]:
    """The rules that read the native-shaped Avro event (schemas/usage_event.avsc)."""
    return {
        "topics": topics,
        "format": fmt,
        "customer_id": {"path": "customerId"},
        "meter": {"path": "meterApiName"},
        "value": {"path": "meterValue"},
        "time": {"path": "meterTimeInMillis", "unit": "ms"},
        "dimensions": {"plan": {"path": "plan", "default": "none"}},
        **extra,
    }


def events(meter: str, n: int, start: int = 0, customers: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "customerId": f"{meter}-c{i % customers}",
            "meterApiName": meter,
            "meterValue": float(i % 4 + 1),
            "meterTimeInMillis": T0 + i * 1000,
            "dimensions": {},
            "uniqueId": None,
        }
        for i in range(start, start + n)
    ]


def serialize(registry: str, topic: str, schema: dict[str, Any], rows: list[Any]) -> list[bytes]:
    """Confluent's AvroSerializer: registers ``schema`` under ``<topic>-value``, wire format."""
    ser = AvroSerializer(SchemaRegistryClient({"url": registry}), json.dumps(schema))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [ser(row, ctx) for row in rows]


def schemaless(schema: dict[str, Any], rows: list[Any]) -> list[bytes]:
    import io

    import fastavro

    parsed = fastavro.parse_schema(schema)
    out = []
    for row in rows:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, row)
        out.append(buf.getvalue())
    return out


def totals(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r["meterApiName"], r["customerId"])
        out[key] = out.get(key, 0) + r["meterValue"]
    return out


def meter() -> str:
    return f"avro-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start(
    kafka_broker: str,
    amberflo_emulator: Emulator,
    schema_registry: LocalSchemaRegistry,
    connectors: Callable[..., ConnectorProcess],
    emu: Emu,
) -> Iterator[Callable[..., ConnectorProcess]]:
    def _start(
        topics: list[str], group: str, mappings: list[dict[str, Any]], **extra: str
    ) -> ConnectorProcess:
        extra.setdefault("CONNECTOR_KAFKA__CONSUMER", QUICK_GROUP)
        env = connector_env(
            kafka_broker,
            ",".join(topics),
            amberflo_emulator.base_url,
            amberflo_emulator.api_key,
            group,
            CONNECTOR_SCHEMA_REGISTRY__URL=schema_registry.url,
            CONNECTOR_SCHEMA_REGISTRY__TIMEOUT_S="2",
            CONNECTOR_MAPPINGS=json.dumps(mappings),
            **extra,
        )
        return connectors(env)

    yield _start
    emu.clear_faults()
    schema_registry.fail_next(0)
    schema_registry.start()


def test_avro_versions_and_schemaless_mapped_with_bad_records_dead_lettered(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    schema_registry: LocalSchemaRegistry,
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    avro_topic, local_topic, m = topic_factory(2), topic_factory(1), meter()
    v1_rows, v2_rows = events(m, 400), events(m, 400, start=400)
    for i, row in enumerate(v2_rows):
        row["plan"] = ("pro", "team")[i % 2]
    local_rows = events(m, 200, start=800)
    v1 = serialize(schema_registry.url, avro_topic, V1, v1_rows)
    v2 = serialize(schema_registry.url, avro_topic, V2, v2_rows)
    assert v1[0][1:5] != v2[0][1:5]  # two schema ids, one subject
    good = v1[:200] + v2[:200] + v1[200:] + v2[200:]
    bad_avro = [
        b'{"customerId": "c1"}',  # JSON on an Avro topic
        v1[0][:5] + b"",  # header only
        b"\x00\x00\x0f\x42\x40" + v1[0][5:],  # schema id 1,000,000: unknown
        v2[0][:-2],  # truncated
    ]
    produce(kafka_broker, avro_topic, good[:500] + bad_avro + good[500:])
    local_good = schemaless(V1, local_rows)
    bad_local = schemaless(V2, events(m, 1, start=9999))  # written with another schema
    produce(kafka_broker, local_topic, local_good[:100] + bad_local + local_good[100:])

    group = f"g-{m}"
    proc = start(
        [avro_topic, local_topic],
        group,
        [
            mapping([avro_topic]),
            mapping([local_topic], "avro-schemaless", schema=str(SCHEMAS / "usage_event.avsc")),
        ],
    )
    expected = totals(v1_rows + v2_rows + local_rows)
    n = len(v1_rows) + len(v2_rows) + len(local_rows)
    wait_until(lambda: emu.count(m) >= n, 60, f"{n} events stored")
    assert emu.totals(m) == pytest.approx(expected)
    plans = {
        r["dimensions"]["plan"]
        for r in emu.s.get(
            f"{emu.base_url}/_emulator/records",
            params={"customerId": f"{m}-c1", "limit": 10_000},
            timeout=10,
        ).json()["records"]
    }
    assert plans == {"none", "pro", "team"}  # v1 records take the rule's default

    dead = read_topic(kafka_broker, f"{avro_topic}.dlq", expect=len(bad_avro))
    reasons = [header(d, "amberflo.error.message") or "" for d in dead]
    assert {header(d, "amberflo.error.stage") for d in dead} == {"decode"}
    assert len(reasons) == 4
    for reason, count in (
        ("not in the Confluent Avro wire format", 1),
        ("schema id 1000000 is unknown to the Schema Registry", 1),
        ("does not decode with schema id", 2),  # header only, truncated
    ):
        assert sum(reason in r for r in reasons) == count, reasons
    [local_dead] = read_topic(kafka_broker, f"{local_topic}.dlq", expect=1)
    assert "left over" in (header(local_dead, "amberflo.error.message") or "")
    assert local_dead.value() == bad_local[0]

    wait_until(
        lambda: (
            sum(committed(kafka_broker, group, avro_topic, 2).values()) == len(good) + len(bad_avro)
            and committed(kafka_broker, group, local_topic, 1)[0] == len(local_rows) + 1
        ),
        15,
        "every offset committed",
    )
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert emu.count(m) == n


def test_registry_down_pauses_the_partition_and_never_dead_letters(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    schema_registry: LocalSchemaRegistry,
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    avro_topic, native_topic, m = topic_factory(2), topic_factory(1), meter()
    first, later = events(m, 300), events(m, 300, start=300)
    for row in later:
        row["plan"] = "pro"
    v1 = serialize(schema_registry.url, avro_topic, V1, first)
    v2 = serialize(schema_registry.url, avro_topic, V2, later)  # registered now, never fetched
    group = f"g-{m}"
    # max.poll.interval.ms below the outage: a worker that stopped polling while it waits
    # would be thrown out of the group (and log a revoke).
    proc = start(
        [avro_topic, native_topic],
        group,
        [mapping([avro_topic])],
        CONNECTOR_KAFKA__CONSUMER=json.dumps(
            {**json.loads(QUICK_GROUP), "max.poll.interval.ms": 4000}
        ),
        CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="200",
    )
    produce(kafka_broker, avro_topic, v1)
    wait_until(lambda: emu.count(m) == 300, 60, "the first 300 stored")

    outage_started = time.monotonic()
    schema_registry.fail_next(10**9, 503)  # first overloaded…
    produce(kafka_broker, avro_topic, v2)
    wait_until(lambda: "HTTP 503" in proc.output(), 20, "a 503 from the registry")
    schema_registry.stop()  # …then gone
    wait_until(lambda: "unreachable" in proc.output(), 20, "the registry unreachable")
    native = [
        {"customerId": "n1", "meterApiName": f"{m}-native", "meterTimeInMillis": T0}
        for _ in range(50)
    ]
    produce(kafka_broker, native_topic, native)  # other partitions keep flowing meanwhile
    wait_until(lambda: emu.count(f"{m}-native") == 50, 30, "native records stored")
    while time.monotonic() - outage_started < 5.5:  # past max.poll.interval.ms
        assert emu.count(m) == 300
        done = sum(max(o, 0) for o in committed(kafka_broker, group, avro_topic, 2).values())
        assert done <= 300  # nothing past the waiting records is committed
        time.sleep(0.5)

    schema_registry.fail_next(0)
    schema_registry.start()
    wait_until(lambda: emu.count(m) >= 600, 30, "all 600 stored after the registry returned")
    wait_until(
        lambda: sum(committed(kafka_broker, group, avro_topic, 2).values()) == 600,
        15,
        "every offset committed",
    )
    assert emu.count(m) == 600
    assert emu.totals(m) == pytest.approx(totals(first + later))
    assert read_topic(kafka_broker, f"{avro_topic}.dlq", idle=0.5) == []
    out = proc.output()
    assert "not dead-lettered" in out
    assert "revoked" not in out and "lost" not in out  # never left the group
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_kill_9_with_mapped_avro_counts_exactly_once(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    schema_registry: LocalSchemaRegistry,
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(4), meter()
    rows = events(m, 10_000, customers=7)
    produce(kafka_broker, topic, serialize(schema_registry.url, topic, V1, rows))
    group = f"g-{m}"
    dup_before = emu.stats()["duplicates"]
    # As in test_pipeline's kill -9 test: uncommitted deliveries at the kill (long commit
    # interval), and a kill that lands mid-stream (20 ms per 100-event request).
    with emu.slowed_ingest(latency_ms=20, requests=100):
        first = start(
            [topic],
            group,
            [mapping([topic])],
            CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="4000",
            CONNECTOR_SINK__BATCH_SIZE="100",
            CONNECTOR_SINK__MAX_IN_FLIGHT="1",
        )
        wait_until(lambda: emu.count(m) >= 3000, 60, "some events stored")
        first.kill()
    assert emu.count(m) < 10_000
    start([topic], group, [mapping([topic])])
    wait_until(
        lambda: (
            emu.count(m) >= 10_000
            and sum(committed(kafka_broker, group, topic, 4).values()) == 10_000
        ),
        90,
        "all events stored",
    )
    time.sleep(1)
    assert emu.count(m) == 10_000
    assert emu.totals(m) == pytest.approx(totals(rows))
    assert emu.stats()["duplicates"] > dup_before  # the replayed overlap was discarded
