"""Each row of the failure classification, end to end: the real connector process, the real
broker and the real emulator (faults injected through its /_emulator/faults control)."""

from __future__ import annotations

import json
import math
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka.admin import AdminClient

import connector
from connector.embedded import free_port
from tests.conftest import Emulator
from tests.integration.failure_harness import (
    QUICK_GROUP,
    TcpProxy,
    header,
    headers_of,
    metric,
    produce_raw,
    read_topic,
    tansu_proxy,
    wait_for_records,
)
from tests.integration.harness import (
    ConnectorProcess,
    Emu,
    committed,
    connector_env,
    expected_totals,
    usage_records,
    wait_until,
)

T0 = 1_767_225_600_000
TOO_LATE = 10**15  # year 33658: the transform accepts it, Amberflo (the emulator) answers 400
AMBERFLO_ERROR_NAMES = [
    "amberflo.error.stage",
    "amberflo.error.class",
    "amberflo.error.message",
    "amberflo.source.topic",
    "amberflo.source.partition",
    "amberflo.source.offset",
    "amberflo.source.timestamp",
    "amberflo.failed_at",
    "amberflo.connector.version",
    "amberflo.origin",
]


@pytest.fixture
def start(
    kafka_broker: str,
    amberflo_emulator: Emulator,
    connectors: Callable[..., ConnectorProcess],
    emu: Emu,
) -> Iterator[Callable[..., ConnectorProcess]]:
    def _start(topic: str, group: str, **extra: str) -> ConnectorProcess:
        extra.setdefault("CONNECTOR_KAFKA__CONSUMER", QUICK_GROUP)
        env = connector_env(
            kafka_broker,
            topic,
            amberflo_emulator.base_url,
            amberflo_emulator.api_key,
            group,
            **extra,
        )
        return connectors(env)

    yield _start
    emu.clear_faults()


def meter() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def event(m: str, i: int, **over: object) -> dict[str, object]:
    return {
        "customerId": f"c{i % 3}",
        "meterApiName": m,
        "meterValue": i % 5 + 1,
        "meterTimeInMillis": T0 + i,
        **over,
    }


def joined(proc: ConnectorProcess) -> Callable[[], bool]:
    return lambda: "assigned" in proc.output()


def ingest_requests(emu: Emu) -> tuple[int, dict[str, int]]:
    s = emu.stats()
    return s["ingest_requests"], dict(s["requests"])


def test_decode_and_mapping_failures_keep_the_record_and_say_why(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
    amberflo_emulator: Emulator,
) -> None:
    """decode → stage decode; mapping → stage transform with field and rule; headers exact;
    the DLQ topic is created with the configured partitions; the API key appears nowhere."""
    topic, m = topic_factory(1), meter()
    orig_headers = [("trace", b"abc"), ("trace", b"def"), ("empty", None)]
    bad = [
        (b"not json {", "decode", "DecodeError", "not valid JSON: "),
        (
            orjson.dumps({"meterApiName": m, "meterValue": 2}),
            "transform",
            "MappingError",
            "customerId: must be a non-empty string",
        ),
        (
            orjson.dumps(event(m, 1, meterValue="12")),
            "transform",
            "MappingError",
            "meterValue: must be a number (got str)",
        ),
        (
            orjson.dumps(event(m, 2, meterTimeInMillis="yesterday")),
            "transform",
            "MappingError",
            "meterTimeInMillis: must be a positive integer (got 'yesterday')",
        ),
        (
            orjson.dumps(event(m, 3, dimensions={"region": 5})),
            "transform",
            "MappingError",
            "dimensions.region: must be a string (got int)",
        ),
        (  # once crashed the sink: orjson cannot encode an integer beyond 64 bits
            json.dumps(event(m, 4, meterTimeInMillis=10**25)).encode(),
            "transform",
            "MappingError",
            # the integer as written (orjson used to read it as the float 1e25)
            "meterTimeInMillis: must be below 2^64 (got 10000000000000000000000000)",
        ),
        (  # used to become the float 1.8446744073709552e19 and be billed as that
            json.dumps(event(m, 5, meterValue=2**64)).encode(),
            "transform",
            "MappingError",
            "meterValue: must be within the 64-bit integer range (-2^63 … 2^64-1)",
        ),
    ]
    good = [event(m, i) for i in range(10)]
    records = [{"value": orjson.dumps(g), "key": f"g{i}".encode()} for i, g in enumerate(good[:5])]
    for i, (value, *_rest) in enumerate(bad):
        records.append(
            {
                "value": value,
                "key": f"bad{i}".encode(),
                "headers": orig_headers,
                "timestamp": T0 + 1000 + i,
            }
        )
    records += [{"value": orjson.dumps(g), "key": b"g"} for g in good[5:]]
    produce_raw(kafka_broker, topic, records)

    group = f"g-{m}"
    proc = start(topic, group, CONNECTOR_DLQ__PARTITIONS="3", CONNECTOR_DLQ__REPLICATION_FACTOR="1")
    dead = wait_for_records(kafka_broker, f"{topic}.dlq", len(bad))
    wait_until(lambda: emu.count(m) == 10, 30, "good events stored")
    total = len(good) + len(bad)
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == total, 15, "all committed")
    assert len(dead) == len(bad)
    meta = AdminClient({"bootstrap.servers": kafka_broker}).list_topics(f"{topic}.dlq", timeout=10)
    assert len(meta.topics[f"{topic}.dlq"].partitions) == 3

    dead.sort(key=lambda msg: int(header(msg, "amberflo.source.offset") or -1))
    started = time.time()
    for i, (msg, (value, stage, cls, message)) in enumerate(zip(dead, bad, strict=True)):
        offset = 5 + i
        assert msg.key() == f"bad{i}".encode()
        assert msg.value() == value
        assert msg.timestamp()[1] == T0 + 1000 + i
        hs = headers_of(msg)
        assert hs[:3] == orig_headers  # original headers first, unchanged, repeats and None kept
        added = dict(hs[3:])
        assert [k for k, _ in hs[3:]] == AMBERFLO_ERROR_NAMES  # no http_status: no response
        assert added["amberflo.error.stage"] == stage.encode()
        assert added["amberflo.error.class"] == cls.encode()
        assert added["amberflo.error.message"].decode().startswith(message)  # type: ignore[union-attr]
        assert added["amberflo.source.topic"] == topic.encode()
        assert added["amberflo.source.partition"] == b"0"
        assert added["amberflo.source.offset"] == str(offset).encode()
        assert added["amberflo.source.timestamp"] == str(T0 + 1000 + i).encode()
        assert added["amberflo.connector.version"] == connector.__version__.encode()
        failed_at = datetime.fromisoformat(added["amberflo.failed_at"].decode())  # type: ignore[union-attr]
        assert failed_at.tzinfo == UTC and abs(failed_at.timestamp() - started) < 120

    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    key = amberflo_emulator.api_key
    assert key not in proc.output()
    for msg in dead:
        blob = (msg.value() or b"") + b"".join(k.encode() + (v or b"") for k, v in headers_of(msg))
        assert key.encode() not in blob


def test_connect_header_style(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """CONNECTOR_DLQ__HEADER_STYLE=connect writes Kafka Connect's ten __connect.errors.* headers
    (and no amberflo.* ones) to the configured DLQ topic, created when missing."""
    topic, m = topic_factory(1), meter()
    dlq = f"dlq-{m}"
    produce_raw(
        kafka_broker,
        topic,
        [
            {"value": b"\xff\xfe", "key": b"k0", "headers": [("h", b"1")], "timestamp": T0},
            {"value": orjson.dumps({"meterApiName": m}), "key": b"k1", "timestamp": T0 + 1},
            {
                "value": orjson.dumps(event(m, 0, meterTimeInMillis=TOO_LATE)),
                "key": b"k2",
                "timestamp": T0 + 2,
            },
            {"value": orjson.dumps(event(m, 1)), "key": b"k3", "timestamp": T0 + 3},
            {  # one record, three events, all rejected: still one dead letter
                "value": orjson.dumps(
                    {
                        "customerId": "c",
                        "values": {"a": 1, "b": 2, "c": 3},
                        "meterTimeInMillis": TOO_LATE,
                    }
                ),
                "key": b"k4",
                "timestamp": T0 + 4,
            },
        ],
    )
    group = f"g-{m}"
    proc = start(topic, group, CONNECTOR_DLQ__HEADER_STYLE="connect", CONNECTOR_DLQ__TOPIC=dlq)
    dead = wait_for_records(kafka_broker, dlq, 4)
    wait_until(lambda: emu.count(m) == 1, 30, "the good event stored")
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 5, 15, "all committed")
    assert len(read_topic(kafka_broker, dlq, expect=4)) == 4
    dead.sort(key=lambda msg: int(header(msg, "__connect.errors.offset") or -1))
    names = [
        f"__connect.errors.{n}"
        for n in (
            "topic",
            "partition",
            "offset",
            "connector.name",
            "task.id",
            "stage",
            "class.name",
            "exception.class.name",
            "exception.message",
            "exception.stacktrace",
        )
    ] + ["amberflo.origin"]
    expect = [
        ("VALUE_CONVERTER", "decode", "DecodeError", "not valid JSON"),
        ("TRANSFORMATION", "transform", "MappingError", "customerId: must be a non-empty string"),
        ("TASK_PUT", "sink", "EventRejected", "HTTP 400: "),
        ("TASK_PUT", "sink", "EventRejected", "HTTP 400: "),
    ]
    for msg, (stage, ours, cls, message) in zip(dead, expect, strict=True):
        offset = int(header(msg, "__connect.errors.offset") or -1)
        hs = headers_of(msg)
        assert msg.key() == f"k{offset}".encode() and msg.timestamp()[1] == T0 + offset
        if offset == 0:
            assert msg.value() == b"\xff\xfe" and hs[0] == ("h", b"1")
            hs = hs[1:]
        assert [k for k, _ in hs] == names
        h = {k.removeprefix("__connect.errors."): (v or b"").decode() for k, v in hs}
        assert h["topic"] == topic and h["partition"] == "0" and h["offset"] == str(offset)
        assert h["connector.name"] == group and h["task.id"] == "0"
        assert h["stage"] == stage and h["class.name"] == f"connector.{ours}"
        assert h["exception.class.name"] == f"connector.errors.{cls}"
        assert h["exception.message"].startswith(message)
        assert h["exception.stacktrace"] == f"connector.errors.{cls}: {h['exception.message']}"
    assert "meterTimeInMillis" in (header(dead[2], "__connect.errors.exception.message") or "")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_400_bisects_to_exactly_the_bad_events(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """A batch of 500 with 3 events Amberflo rejects: 497 ingested, exactly those 3
    dead-lettered (stage sink, HTTP 400 detail), in O(bad × log n) requests."""
    topic, m = topic_factory(1), meter()
    bad_at = {17, 250, 431}
    records = [
        event(m, i, meterTimeInMillis=TOO_LATE) if i in bad_at else event(m, i) for i in range(500)
    ]
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(r)} for r in records])
    ok_before, req_before = ingest_requests(emu)
    group = f"g-{m}"
    proc = start(
        topic,
        group,
        CONNECTOR_SINK__BATCH_SIZE="500",
        CONNECTOR_SINK__LINGER_MS="1000",
        CONNECTOR_SINK__MAX_IN_FLIGHT="1",
    )
    dead = wait_for_records(kafka_broker, f"{topic}.dlq", 3)
    wait_until(lambda: emu.count(m) == 497, 30, "497 events stored")
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 500, 15, "all committed")
    good = [r for i, r in enumerate(records) if i not in bad_at]
    assert emu.totals(m) == pytest.approx(expected_totals(good))
    assert sorted(int(header(d, "amberflo.source.offset") or -1) for d in dead) == sorted(bad_at)
    for d in dead:
        assert header(d, "amberflo.error.stage") == "sink"
        assert header(d, "amberflo.error.class") == "EventRejected"
        assert header(d, "amberflo.error.http_status") == "400"
        msg = header(d, "amberflo.error.message") or ""
        assert msg.startswith("HTTP 400: ") and "meterTimeInMillis" in msg  # the emulator's detail
    ok_after, req_after = ingest_requests(emu)
    rejected = req_after.get("400", 0) - req_before.get("400", 0)
    total = (ok_after - ok_before) + rejected
    assert rejected >= 3
    # every level of the bisection splits at most `bad` failing chunks into two requests
    assert total <= 2 + 2 * len(bad_at) * math.ceil(math.log2(500)), (total, rejected)
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_413_halves_and_dead_letters_a_single_event_too_large(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(1), meter()
    huge = event(m, 99, dimensions={"blob": "x" * (1100 * 1024)})  # > 1 MiB decompressed
    huge_bytes = orjson.dumps(huge)
    records = [event(m, i) for i in range(20)]
    values = (
        [orjson.dumps(r) for r in records[:10]]
        + [huge_bytes]
        + [orjson.dumps(r) for r in records[10:]]
    )
    produce_raw(kafka_broker, topic, [{"value": v} for v in values])
    _, req_before = ingest_requests(emu)
    group = f"g-{m}"
    proc = start(topic, group, CONNECTOR_SINK__BATCH_SIZE="100", CONNECTOR_SINK__LINGER_MS="500")
    dead = wait_for_records(kafka_broker, f"{topic}.dlq", 1)
    wait_until(lambda: emu.count(m) == 20, 30, "20 events stored")
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 21, 15, "all committed")
    assert emu.totals(m) == pytest.approx(expected_totals(records))
    assert len(dead) == 1 and dead[0].value() == huge_bytes
    assert header(dead[0], "amberflo.error.http_status") == "413"
    assert header(dead[0], "amberflo.source.offset") == "10"
    _, req_after = ingest_requests(emu)
    assert req_after.get("413", 0) - req_before.get("413", 0) >= 2  # the batch, then alone
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_429_503_honour_retry_after_pause_and_never_dead_letter(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(1), meter()
    group = f"g-{m}"
    # a Retry-After is honoured up to the retry ceiling (the harness's 1 s is too short here)
    proc = start(
        topic, group, CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="100", CONNECTOR_SINK__RETRY_MAX_S="5"
    )
    wait_until(joined(proc), 30, "partitions assigned")
    emu.fault(status=503, count=1, retry_after=2, path="/ingest")
    t0 = time.monotonic()
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(event(m, 0))}])
    wait_until(lambda: emu.count(m) == 1, 30, "the event stored after Retry-After")
    assert time.monotonic() - t0 >= 2.0

    emu.fault(status=429, count=2, retry_after=1, path="/ingest")
    t0 = time.monotonic()
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(event(m, i))} for i in (1, 2)])
    wait_until(lambda: emu.count(m) == 3, 30, "the events stored after two 429s")
    assert time.monotonic() - t0 >= 2.0  # 1 s after each of the two 429s
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 3, 15, "all committed")
    out = proc.output()
    assert "pausing consumption" in out and "resuming consumption" in out
    assert "HTTP 503" in out and "HTTP 429" in out
    assert read_topic(kafka_broker, f"{topic}.dlq", idle=1) == []
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_5xx_timeouts_and_connection_errors_back_off_without_committing(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
    amberflo_emulator: Emulator,
) -> None:
    topic, m = topic_factory(1), meter()
    group = f"g-{m}"
    port = free_port()
    proc = start(
        topic,
        group,
        CONNECTOR_METRICS_PORT=str(port),
        CONNECTOR_SINK__REQUEST_TIMEOUT_S="0.5",
        CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="100",
    )
    wait_until(joined(proc), 30, "partitions assigned")
    # 5xx for as long as the fault lasts: retried, gauge up, nothing committed nor stored
    emu.fault(status=500, count=100_000, path="/ingest")
    records = [event(m, i) for i in range(15)]
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(r)} for r in records[:5]])
    wait_until(
        lambda: metric(port, "amberflo_connector_ingest_backing_off") == 1.0,
        20,
        "the backing-off gauge",
    )
    time.sleep(1.5)
    assert (metric(port, "amberflo_connector_ingest_retries_total") or 0) >= 2
    assert metric(port, "amberflo_connector_paused") == 1.0
    assert committed(kafka_broker, group, topic, 1)[0] <= 0 and emu.count(m) == 0
    emu.clear_faults()
    wait_until(lambda: emu.count(m) == 5, 20, "stored after the 5xx stop")
    wait_until(lambda: metric(port, "amberflo_connector_ingest_backing_off") == 0.0, 10, "gauge 0")

    # timeouts: the emulator stalls longer than CONNECTOR_SINK__REQUEST_TIMEOUT_S
    emu.fault(latency_ms=1500, count=2, path="/ingest")
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(r)} for r in records[5:10]])
    wait_until(lambda: emu.count(m) == 10, 30, "stored after the timeouts")
    assert (metric(port, "amberflo_connector_ingest_requests_total", 'status="timeout"') or 0) >= 1
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 10, 15, "10 committed")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0

    # connection refused: /ingest behind a proxy that is not up yet
    proxy = TcpProxy(amberflo_emulator.process.port)
    second = start(topic, group, CONNECTOR_AMBERFLO__INGEST_URL=f"http://127.0.0.1:{proxy.port}")
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(r)} for r in records[10:]])
    wait_until(lambda: "cannot reach" in second.output(), 30, "a connection error logged")
    time.sleep(1)
    assert emu.count(m) == 10 and committed(kafka_broker, group, topic, 1)[0] == 10
    proxy.start()
    try:
        wait_until(lambda: emu.count(m) == 15, 30, "stored once /ingest is reachable")
        wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 15, 15, "committed")
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
        proxy.stop()
    assert emu.totals(m) == pytest.approx(expected_totals(records))
    assert read_topic(kafka_broker, f"{topic}.dlq", idle=1) == []


def test_retry_timeout_stops_the_connector(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(1), meter()
    group = f"g-{m}"
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(event(m, 0))}])
    emu.fault(status=502, count=100_000, path="/ingest")
    proc = start(topic, group, CONNECTOR_SINK__RETRY_TIMEOUT_S="2")
    assert proc.wait(40) == 1
    out = proc.output()
    assert re.search(
        r"^amberflo-connector: ingest kept failing for [23]s \(CONNECTOR_SINK__RETRY_TIMEOUT_S\): "
        r"HTTP 502 from ",
        out,
        re.M,
    )
    assert "Traceback" not in out
    assert committed(kafka_broker, group, topic, 1)[0] <= 0  # nothing past the failing record
    assert read_topic(kafka_broker, f"{topic}.dlq", idle=1) == []


def test_401_mid_stream_stops_with_nothing_more_committed_or_dead_lettered(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(1), meter()
    group = f"g-{m}"
    records = usage_records(m, 80)
    proc = start(
        topic, group, CONNECTOR_SINK__MAX_IN_FLIGHT="1", CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="100"
    )
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(r)} for r in records[:50]])
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 50, 30, "50 committed")
    emu.fault(status=401, count=1, path="/ingest")
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(r)} for r in records[50:]])
    assert proc.wait(30) == 1
    out = proc.output()
    lines = [line for line in out.splitlines() if line.startswith("amberflo-connector:")]
    assert lines == [
        "amberflo-connector: Amberflo rejected the API key (HTTP 401 from "
        f"{emu.base_url}/ingest); check CONNECTOR_AMBERFLO__API_KEY"
    ]
    assert "Traceback" not in out
    assert committed(kafka_broker, group, topic, 1)[0] == 50
    assert emu.count(m) == 50
    assert read_topic(kafka_broker, f"{topic}.dlq", idle=1) == []


def test_dlq_outage_holds_the_commit_until_the_dead_letter_is_acknowledged(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """The DLQ producer reaches the broker through a proxy that is down at first: the records
    after the bad one are ingested, but the commit stays at the bad record until its dead letter
    is acknowledged; then it moves on, and the dead letter exists exactly once."""
    topic, m = topic_factory(1), meter()
    group = f"g-{m}"
    port = free_port()
    producer = orjson.dumps(
        {"bootstrap.servers": f"127.0.0.1:{port}", "message.timeout.ms": 1500}
    ).decode()
    values = (
        [orjson.dumps(event(m, i)) for i in range(10)]
        + [b"\x00 not json"]
        + [orjson.dumps(event(m, i)) for i in range(10, 19)]
    )
    produce_raw(kafka_broker, topic, [{"value": v} for v in values])
    proc = start(
        topic, group, CONNECTOR_KAFKA__PRODUCER=producer, CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="100"
    )
    wait_until(lambda: emu.count(m) == 19, 30, "the good records stored")
    wait_until(lambda: "not acknowledged" in proc.output(), 20, "a DLQ failure logged")
    for _ in range(10):
        assert committed(kafka_broker, group, topic, 1)[0] == 10
        time.sleep(0.2)
    with tansu_proxy(port, kafka_broker):
        wait_until(
            lambda: committed(kafka_broker, group, topic, 1)[0] == 20,
            30,
            "committed past the dead letter",
        )
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    dead = read_topic(kafka_broker, f"{topic}.dlq", expect=1)
    assert [d.value() for d in dead] == [b"\x00 not json"]
