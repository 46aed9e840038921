import gzip

import orjson
import pytest

from connector.amberflo.status import parse_retry_after
from connector.errors import FatalError, RetryableError, ThrottledError
from connector.records import MeterEvent
from connector.settings import Settings
from connector.sinks.api import Sink, classify

URL = "http://x/ingest"


def test_classification_table() -> None:
    assert classify(200, {}, "2 records were ingested", URL) is None
    assert type(classify(400, {}, "bad", URL)).__name__ == "_Rejected"
    assert type(classify(413, {}, "big", URL)).__name__ == "_Rejected"
    for status in (401, 403):
        err = classify(status, {}, "", URL)
        assert isinstance(err, FatalError) and "CONNECTOR_AMBERFLO__API_KEY" in str(err)
    assert isinstance(classify(404, {}, "", URL), FatalError)
    throttled = classify(429, {"Retry-After": "3"}, "", URL)
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 3.0
    assert isinstance(classify(503, {}, "", URL), ThrottledError)
    lower = classify(503, {"retry-after": "2"}, "", URL)  # header names are case-insensitive
    assert isinstance(lower, ThrottledError) and lower.retry_after == 2.0
    for status in (500, 502, 504, 408):
        err = classify(status, {}, "", URL)
        assert isinstance(err, RetryableError) and not isinstance(err, ThrottledError)


def test_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


@pytest.mark.parametrize("garbage", ["inf", "-inf", "nan", "-5", "soon", "1e400", "Fri, 99 Foo"])
def test_retry_after_that_is_no_delay_counts_as_absent(garbage: str) -> None:
    assert parse_retry_after(garbage) is None


def test_encode_is_gzip_json_array_and_deterministic() -> None:
    s = Settings(kafka={"topics": ["t"]}, amberflo={"api_key": "k"})
    sink = Sink(s)
    events = [MeterEvent("c", "m", 1, 5, "u1", (("d", "v"),)), MeterEvent("c", "m", 2.5, 6, "u2")]
    body = sink.encode(events)
    assert body == sink.encode(events)  # mtime=0: same bytes every time
    assert orjson.loads(gzip.decompress(body)) == [
        {
            "customerId": "c",
            "meterApiName": "m",
            "meterValue": 1,
            "meterTimeInMillis": 5,
            "uniqueId": "u1",
            "dimensions": {"d": "v"},
        },
        {
            "customerId": "c",
            "meterApiName": "m",
            "meterValue": 2.5,
            "meterTimeInMillis": 6,
            "uniqueId": "u2",
        },
    ]
