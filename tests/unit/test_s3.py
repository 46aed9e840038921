"""S3 pieces that need no server: report keys, report texts, object limits."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson
import pytest

from connector.aws import report_key, reported_object
from connector.emulator import s3_intake
from connector.emulator.ingest import IngestRejected, parse_events, prepare
from connector.emulator.s3_intake import reason_text
from connector.emulator.state import EmulatorState
from connector.emulator.store import Store
from connector.errors import FatalError, RetryableError, ThrottledError
from connector.pipeline.checkpoint import PartitionState
from connector.records import MeterEvent, SourceRecord
from connector.sinks.base import Item
from connector.sinks.s3 import ObjectRange, classify, encode, object_key, parse_object_key


def test_report_key_round_trip() -> None:
    key = "ingest/amberdata/11-25-2026/usage.events.3.1000-1999.ndjson.gz"
    report = report_key(key, datetime(2026, 11, 26, 0, 5, tzinfo=UTC))
    assert report == f"failed-requests/11-26-2026/{key}.reason.txt"
    assert reported_object(report) == key
    for other in ("ingest/x.gz", "failed-requests/x.reason.txt", "failed-requests/d/x.txt"):
        assert reported_object(other) is None


def test_reason_text_has_one_line_per_problem() -> None:
    events = [{"customerId": "a", "meterApiName": "m", "meterValue": 1, "meterTimeInMillis": 1}]
    events.append({"meterApiName": "m", "meterValue": "x", "meterTimeInMillis": 1})
    with pytest.raises(IngestRejected) as caught:
        prepare(events, {})
    assert reason_text(caught.value).splitlines() == [
        "BAD_REQUEST: 1 of 2 events are invalid; nothing of this request was ingested",
        "event 1 field customerId: required; must be a non-empty string",
        "event 1 field meterValue: required (unless values is given); must be a finite number",
    ]


def test_objects_have_no_per_request_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    st = EmulatorState(Store(":memory:"))
    events = [
        {"customerId": "a", "meterApiName": "m", "meterValue": 1, "meterTimeInMillis": i + 1}
        for i in range(2500)
    ]
    body = b"\n".join(orjson.dumps(e) for e in events)
    assert len(st.prepare_object(gzip.compress(body), gzipped=True).rows) == 2500
    assert len(st.prepare_object(body, gzipped=False).rows) == 2500
    with pytest.raises(IngestRejected):  # /ingest's limit is still there
        parse_events(body)
    monkeypatch.setattr(s3_intake, "MAX_OBJECT_BYTES", len(body) - 1)
    with pytest.raises(IngestRejected) as caught:
        st.prepare_object(gzip.compress(body), gzipped=True)
    assert caught.value.status == 413


def item(topic: str, partition: int, offset: int, ts: int, value: float = 1) -> Item:
    record = SourceRecord(topic, partition, offset, ts, None, b"")
    event = MeterEvent("c", "m", value, 1_764_000_000_000, f"u{offset}", {"r": "eu"})
    return Item(event, record, PartitionState(topic, partition))


def test_object_key_is_a_function_of_the_records() -> None:
    items = [item("usage.events-v2", 3, o, 1_764_028_800_000 + o) for o in range(1000, 1500)]
    key = object_key("ingest/amberdata", items)
    # the date of the first record's Kafka timestamp (2025-11-25T00:00Z), never the clock
    assert key == "ingest/amberdata/11-25-2025/usage.events-v2.3.1000-1499.ndjson.gz"
    assert parse_object_key("ingest/amberdata", key) == ObjectRange(
        "usage.events-v2", 3, 1000, 1499
    )
    assert parse_object_key("ingest/other", key) is None
    assert parse_object_key("ingest/amberdata", key + ".reason.txt") is None
    # no Kafka timestamp: the first event's time
    assert "/11-24-2025/" in object_key("p", [item("t", 0, 5, -1)])
    assert object_key("", [item("t", 0, 5, -1)]).startswith("11-24-2025/t.0.5-5")


def test_body_is_deterministic_gzip_ndjson() -> None:
    items = [item("t", 0, o, 1) for o in range(3)]
    body = encode(items, 1)
    assert body == encode(items, 1)  # no gzip timestamp
    lines = gzip.decompress(body).splitlines()
    assert [orjson.loads(x) for x in lines] == [it.event.payload() for it in items]


def test_s3_error_classification() -> None:
    def err(code: str, status: int) -> Exception:
        return classify({"Code": code, "Message": "m"}, status, "b", "k")

    assert isinstance(err("SlowDown", 503), ThrottledError)
    for code, status in (("InternalError", 500), ("RequestTimeout", 400), ("ExpiredToken", 400)):
        e = err(code, status)
        assert isinstance(e, RetryableError) and not isinstance(e, ThrottledError), code
    denied = err("AccessDenied", 403)
    assert isinstance(denied, FatalError) and "denied access to s3://b/k" in str(denied)
    head = classify({"Code": "403", "Message": "Forbidden"}, 403, "b")  # HeadBucket: no body
    assert isinstance(head, FatalError) and "CONNECTOR_S3__BUCKET" in str(head)
    missing = err("NoSuchBucket", 404)
    assert isinstance(missing, FatalError) and "does not exist" in str(missing)
    region = err("PermanentRedirect", 301)
    assert isinstance(region, FatalError) and "CONNECTOR_S3__REGION" in str(region)
    assert isinstance(err("InvalidArgument", 400), FatalError)


def test_s3_mode_without_a_bucket_is_one_config_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.errors import ConfigError
    from connector.settings import load_settings

    for name, value in {
        "CONNECTOR_KAFKA__TOPICS": "t",
        "CONNECTOR_AMBERFLO__API_KEY": "k",
        "CONNECTOR_SINK__MODE": "s3",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == ("CONNECTOR_S3__BUCKET (with CONNECTOR_SINK__MODE=s3): is required")
    monkeypatch.setenv("CONNECTOR_S3__BUCKET", "b")
    assert load_settings().s3.bucket == "b"
