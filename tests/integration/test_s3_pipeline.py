"""The S3 sink end to end: real broker, moto's S3 server (a process), the emulator's S3
intake and the real connector process."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from connector.embedded import EmbeddedS3
from connector.sinks.s3 import ObjectRange, parse_object_key
from connector.sinks.s3_failures import is_tagged
from tests.conftest import S3Stack
from tests.integration import s3_support
from tests.integration.failure_harness import read_topic
from tests.integration.harness import (
    ConnectorProcess,
    Emu,
    committed,
    connector_env,
    expected_totals,
    produce,
    usage_records,
    wait_until,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def emu(s3_stack: S3Stack) -> Emu:
    return Emu(s3_stack.emulator.base_url, s3_stack.emulator.api_key)


@pytest.fixture
def s3(s3_stack: S3Stack) -> S3Client:
    return s3_support.client(s3_stack.endpoint_url)


@pytest.fixture
def start(
    kafka_broker: str, s3_stack: S3Stack, tmp_path: Path
) -> Iterator[Callable[..., ConnectorProcess]]:
    """Starts ``amberflo-connector run`` in s3 mode with its own key prefix."""
    procs: list[ConnectorProcess] = []

    def _start(topic: str, group: str, prefix: str, **extra: str) -> ConnectorProcess:
        env = connector_env(
            kafka_broker,
            topic,
            s3_stack.emulator.base_url,
            s3_stack.emulator.api_key,
            group,
            **{
                **EmbeddedS3.credentials,
                "CONNECTOR_SINK__MODE": "s3",
                "CONNECTOR_S3__BUCKET": s3_stack.bucket,
                "CONNECTOR_S3__ENDPOINT_URL": s3_stack.endpoint_url,
                "CONNECTOR_S3__PREFIX": prefix,
                "CONNECTOR_S3__LINGER_MS": "300",
                **extra,
            },
        )
        p = ConnectorProcess(env, tmp_path / f"connector-{len(procs)}.log")
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.close()


def names() -> tuple[str, str, str]:
    m = f"m-{uuid.uuid4().hex[:8]}"
    return m, f"g-{m}", f"ingest/{m}"


def objects(s3: S3Client, bucket: str, prefix: str) -> dict[str, ObjectRange]:
    out = {}
    for key in s3_support.keys(s3, bucket, prefix + "/"):
        parsed = parse_object_key(prefix, key)
        assert parsed is not None, key
        out[key] = parsed
    return out


@pytest.fixture
def proxy(s3_stack: S3Stack) -> Iterator[s3_support.FaultProxy]:
    p = s3_support.FaultProxy(s3_stack.endpoint_url)
    yield p
    p.close()


def stored_end(puts: list[tuple[str, str]], prefix: str, partition: int) -> int:
    """One past the last offset of the partition covered, from offset 0 on, by stored
    objects (with every record valid, the objects of a partition are contiguous)."""
    ranges = sorted(
        {
            (r.first, r.last)
            for k, _ in puts
            if (r := parse_object_key(prefix, k)) and r.partition == partition
        }
    )
    end = 0
    for first, last in ranges:
        if first > end:
            break
        end = max(end, last + 1)
    return end


def test_every_record_once_through_s3_despite_slowdown(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    s3_stack: S3Stack,
    s3: S3Client,
    emu: Emu,
    proxy: s3_support.FaultProxy,
    start: Callable[..., ConnectorProcess],
) -> None:
    """N records in → exactly N stored, while S3 answers 503 SlowDown for a while: nothing is
    committed past what S3 holds meanwhile.  Objects: one partition each, one aligned run of
    offsets, gzip'd NDJSON of the events."""
    topic = topic_factory(2)
    m, group, prefix = names()
    records = usage_records(m, 2000, value=lambda i: (i % 7) + 0.5)
    produce(kafka_broker, topic, records[:400])
    proc = start(
        topic,
        group,
        prefix,
        CONNECTOR_S3__ENDPOINT_URL=proxy.endpoint_url,
        CONNECTOR_S3__OBJECT_RECORDS="100",
        CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="200",
    )
    wait_until(lambda: emu.count(m) == 400, 60, "the first 400 stored")
    proxy.fail_puts(4.0)  # 503 SlowDown on every object PUT for 4 s
    produce(kafka_broker, topic, records[400:])
    while proxy.failing:  # committed offsets never pass what S3 holds
        done = committed(kafka_broker, group, topic, 2)
        puts = list(proxy.puts)
        for p in (0, 1):
            assert done[p] <= stored_end(puts, prefix, p), (p, done[p])
    assert proxy.refused > 0
    wait_until(lambda: emu.count(m) == 2000, 60, "all stored after the SlowDown")
    assert "S3 upload attempt 1 failed: S3 is throttling (SlowDown" in proc.output()
    assert emu.totals(m) == pytest.approx(expected_totals(records))
    wait_until(
        lambda: sum(committed(kafka_broker, group, topic, 2).values()) == 2000, 15, "committed"
    )
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert emu.count(m) == 2000
    events = 0
    for key, r in objects(s3, s3_stack.bucket, prefix).items():
        assert r.topic == topic and r.first // 100 == r.last // 100, key
        lines = gzip.decompress(s3.get_object(Bucket=s3_stack.bucket, Key=key)["Body"].read())
        events += len(lines.splitlines())
        assert {orjson.loads(line)["meterApiName"] for line in lines.splitlines()} == {m}
    assert events == 2000


def test_kill_9_three_times_same_keys_same_bytes_exact_totals(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    s3_stack: S3Stack,
    s3: S3Client,
    emu: Emu,
    proxy: s3_support.FaultProxy,
    start: Callable[..., ConnectorProcess],
) -> None:
    """Every window is full (1,200 records per partition, 200 per object), so each object
    is a function of the offsets; PUTs are slowed so each kill lands mid-stream."""
    topic = topic_factory(3)
    m, group, prefix = names()
    records = usage_records(m, 3600)
    for i, r in enumerate(records):  # where each record lands (a fresh topic: offset = i)
        r["dimensions"] = {"partition": str(i // 1200), "offset": str(i % 1200)}
    for p in range(3):
        produce(kafka_broker, topic, records[p * 1200 : (p + 1) * 1200], partition=p)
    proxy.put_delay_s = 0.2
    env = {
        "CONNECTOR_S3__ENDPOINT_URL": proxy.endpoint_url,
        "CONNECTOR_S3__OBJECT_RECORDS": "200",
        "CONNECTOR_S3__LINGER_MS": "60000",  # no object is cut short by time
        "CONNECTOR_SINK__MAX_IN_FLIGHT": "1",
        "CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": "1500",
        "CONNECTOR_KAFKA__CONSUMER": '{"session.timeout.ms": 2000, "heartbeat.interval.ms": 250}',
    }
    for _ in range(3):
        before = len(proxy.puts)
        proc = start(topic, group, prefix, **env)
        wait_until(lambda: len(proxy.puts) >= before + 3, 60, "3 more objects stored")  # noqa: B023
        proc.kill()
        assert sum(committed(kafka_broker, group, topic, 3).values()) < 3600  # mid-stream
    start(topic, group, prefix, **env)
    wait_until(lambda: emu.count(m) >= 3600, 90, "all events stored")
    wait_until(
        lambda: sum(committed(kafka_broker, group, topic, 3).values()) == 3600, 15, "committed"
    )
    assert emu.count(m) == 3600
    assert emu.totals(m) == pytest.approx(expected_totals(records))
    bodies: dict[str, set[str]] = defaultdict(set)
    for key, digest in proxy.puts:
        bodies[key].add(digest)
    assert all(len(d) == 1 for d in bodies.values())  # a re-sent object: the same bytes
    assert len(proxy.puts) > len(bodies)  # and re-sends did happen
    assert len(bodies) == 18  # 3 partitions × 6 windows: no other key ever appeared
    for key in bodies:  # each key names exactly what its object holds
        r = parse_object_key(prefix, key)
        assert r is not None and r.first % 200 == 0 and r.last == r.first + 199, key
        body = gzip.decompress(s3.get_object(Bucket=s3_stack.bucket, Key=key)["Body"].read())
        dims = [orjson.loads(line)["dimensions"] for line in body.splitlines()]
        assert [(int(d["partition"]), int(d["offset"])) for d in dims] == [
            (r.partition, o) for o in range(r.first, r.last + 1)
        ], key


def test_access_denied_or_missing_bucket_stop_with_one_line(
    topic_factory: Callable[..., str],
    s3_stack: S3Stack,
    proxy: s3_support.FaultProxy,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic = topic_factory(1)
    _, group, prefix = names()
    proxy.deny = True
    denied = start(topic, group, prefix, CONNECTOR_S3__ENDPOINT_URL=proxy.endpoint_url)
    missing = start(topic, group, prefix, CONNECTOR_S3__BUCKET="no-such-bucket")
    assert denied.wait(60) == 1
    assert missing.wait(60) == 1
    for proc, text in (
        (denied, f"S3 denied access to s3://{s3_stack.bucket} (403"),
        (missing, "bucket 'no-such-bucket' does not exist (CONNECTOR_S3__BUCKET)"),
    ):
        lines = [x for x in proc.output().splitlines() if x.startswith("amberflo-connector:")]
        assert len(lines) == 1 and text in lines[0], proc.output()
        assert "Traceback" not in proc.output()


def test_a_rejected_object_has_its_records_dead_lettered_once_with_the_reason(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    s3_stack: S3Stack,
    s3: S3Client,
    emu: Emu,
    proxy: s3_support.FaultProxy,
    start: Callable[..., ConnectorProcess],
) -> None:
    """A record the connector maps but Amberflo refuses (year > 9999) makes Amberflo (the
    emulator's intake) reject its whole object and write a failure report; the connector
    dead-letters that object's 199 records, re-read from Kafka, with the reason.  Exactly once
    across a crash: the report's tag is refused (the watcher tags only once every letter is
    acknowledged), the partition commits further meanwhile (the ledger's mark must stay below
    the open report's letters), then `kill -9`; the restarted connector finds the letters in
    the DLQ, writes none again, and tags the report; `s3 failures` lists it as handled."""
    topic = topic_factory(1)
    m, group, prefix = names()
    records: list[object] = list(usage_records(m, 600))
    records[250] = {**usage_records(m, 1)[0], "meterTimeInMillis": 300_000_000_000_000}
    records[300] = b"{bad"  # dead-lettered at decode: not in the object, not again
    produce(kafka_broker, topic, records)
    env = {
        "CONNECTOR_S3__ENDPOINT_URL": proxy.endpoint_url,
        "CONNECTOR_S3__OBJECT_RECORDS": "200",
        "CONNECTOR_S3__FAILURES_POLL_S": "0.5",
        "CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": "200",
        "CONNECTOR_KAFKA__CONSUMER": '{"session.timeout.ms": 2000, "heartbeat.interval.ms": 250}',
    }
    proxy.refuse_tagging = True
    proc = start(topic, group, prefix, **env)
    dlq = f"{topic}.dlq"
    wait_until(lambda: emu.count(m) == 400, 60, "the two accepted objects stored")
    wait_until(lambda: proxy.tagging_refused > 0, 60, "the report's letters acknowledged")
    more = [b"{bad again", *usage_records(m, 99, t0=1_767_312_000_000)]  # offsets 600-699
    produce(kafka_broker, topic, more)
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 700, 30, "committed 700")
    produce(kafka_broker, topic, usage_records(m, 1, t0=1_767_398_400_000))
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 701, 30, "committed 701")
    proc.kill()  # after the letters, before the tag, and with the partition's marks moved on
    proxy.refuse_tagging = False
    restarted = start(topic, group, prefix, **env)
    [report] = s3_support.reports(s3, s3_stack.bucket, f"{topic}.0.200-399").keys()
    wait_until(lambda: is_tagged(s3, s3_stack.bucket, report), 60, "the report tagged")
    letters = read_topic(kafka_broker, dlq, expect=201)
    by_class: dict[str, list[int]] = defaultdict(list)
    for msg in letters:
        h = {k: (v or b"").decode() for k, v in msg.headers()}
        by_class[h["amberflo.error.class"]].append(int(h["amberflo.source.offset"]))
        if h["amberflo.error.class"] == "S3ObjectRejected":
            assert h["amberflo.error.stage"] == "sink"
            text = h["amberflo.error.message"]
            assert f"{topic}.0.200-399.ndjson.gz: BAD_REQUEST: 1 of 199 events" in text
            assert "field meterTimeInMillis: required; must be an integer between" in text
            # replayed, the records derive the uniqueIds they were first sent with
            assert h["amberflo.origin"].endswith(f"/0/{h['amberflo.source.offset']}")
            assert h["amberflo.origin"].startswith(f"{topic}@")
    rejected = [o for o in range(200, 400) if o != 300]
    assert by_class == {"DecodeError": [300, 600], "S3ObjectRejected": rejected}
    assert "0 dead letter(s) for" in restarted.output()
    assert "(199 were in the dead-letter topic already)" in restarted.output()
    listing = subprocess.run(
        [sys.executable, "-m", "connector", "s3", "failures", "--json"],
        env=restarted.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [row] = [orjson.loads(line) for line in listing.stdout.splitlines()]
    assert row["records"] == f"{topic}[0] 200-399" and row["dead_lettered"] is True
    assert emu.count(m) == 500


def test_s3_failures_command_errors_are_one_line(s3_stack: S3Stack) -> None:
    """`s3 failures` with a missing bucket, an unreachable endpoint or no credentials: one
    line naming the bucket (and the setting to look at), exit 1, no traceback."""
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "AWS_"))},
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "CONNECTOR_S3__REGION": "us-east-1",
        "CONNECTOR_S3__ENDPOINT_URL": s3_stack.endpoint_url,
    }
    no_keys = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    cases = [
        ({"CONNECTOR_S3__BUCKET": "no-such-bucket"}, "bucket 'no-such-bucket' does not exist"),
        (
            {
                "CONNECTOR_S3__BUCKET": s3_stack.bucket,
                "CONNECTOR_S3__ENDPOINT_URL": "http://127.0.0.1:1",
            },
            f"cannot reach S3 for s3://{s3_stack.bucket}: ",
        ),
        ({"CONNECTOR_S3__BUCKET": s3_stack.bucket, **no_keys}, "no AWS credentials for s3://"),
    ]
    for extra, text in cases:
        env = {k: v for k, v in {**base, **extra}.items() if v}
        res = subprocess.run(
            [sys.executable, "-m", "connector", "s3", "failures"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = res.stdout + res.stderr
        assert res.returncode == 1, output
        assert output.startswith(f"amberflo-connector: {text}"), output
        assert len(output.splitlines()) == 1, output
