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
