"""The emulator's S3 intake against moto's S3 server (a real process, real sockets)."""

from __future__ import annotations

import gzip
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from connector.aws import REPORTS_PREFIX
from connector.embedded import EmbeddedEmulator
from tests.conftest import S3Stack
from tests.integration import s3_support
from tests.integration.emulator_support import Api, events_for
from tests.integration.harness import wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def s3(s3_stack: S3Stack) -> S3Client:
    return s3_support.client(s3_stack.endpoint_url)


@pytest.fixture
def api(s3_stack: S3Stack) -> Api:
    return Api(s3_stack.emulator.base_url, s3_stack.emulator.api_key)


def ndjson(events: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def total(api: Api, customer: str) -> tuple[int, float]:
    rows = api.records(customer)
    return len(rows), sum(r["meterValue"] for r in rows)


def test_objects_are_ingested_as_ingest_would(s3_stack: S3Stack, s3: S3Client, api: Api) -> None:
    c = f"c-{uuid.uuid4().hex[:8]}"
    array = events_for(c, "calls", [1, 2, 3])
    lines = events_for(c, "calls", [4, 5], start_ms=1_704_153_600_000)
    single = events_for(c, "storage", [0.5])[0]
    before = api.stats()
    b = s3_stack.bucket
    s3.put_object(Bucket=b, Key=f"ingest/t/{c}/array.json", Body=orjson.dumps(array))
    s3.put_object(Bucket=b, Key=f"ingest/t/{c}/lines.ndjson.gz", Body=gzip.compress(ndjson(lines)))
    s3.put_object(Bucket=b, Key=f"ingest/t/{c}/one.json", Body=orjson.dumps(single))
    wait_until(lambda: total(api, c)[0] == 6, 20, "6 records stored")
    assert total(api, c) == (6, 15.5)
    after = api.stats()
    assert after["s3_objects_ingested"] - before["s3_objects_ingested"] == 3
    assert after["events_accepted"] - before["events_accepted"] == 6
    assert after["ingest_requests"] == before["ingest_requests"]  # objects are not requests


def test_an_invalid_object_is_rejected_whole_with_a_report(
    s3_stack: S3Stack, s3: S3Client, api: Api
) -> None:
    c = f"c-{uuid.uuid4().hex[:8]}"
    events = events_for(c, "calls", [1, 2, 3])
    events[1]["meterTimeInMillis"] = -5
    del events[2]["customerId"]
    key = f"ingest/t/11-25-2026/{c}.ndjson.gz"
    s3.put_object(Bucket=s3_stack.bucket, Key=key, Body=gzip.compress(ndjson(events)))
    found: dict[str, str] = {}

    def reported() -> bool:
        found.update(s3_support.reports(s3, s3_stack.bucket, c))
        return bool(found)

    wait_until(reported, 20, "a failure report")
    [(report, text)] = found.items()
    assert re.fullmatch(rf"{REPORTS_PREFIX}\d\d-\d\d-\d{{4}}/{re.escape(key)}\.reason\.txt", report)
    first, *problems = text.splitlines()
    assert first.startswith("BAD_REQUEST: 2 of 3 events are invalid")
    assert problems == [
        "event 1 field meterTimeInMillis: required; must be an integer between 1 and "
        "253402300799999",
        "event 2 field customerId: required; must be a non-empty string",
    ]
    assert api.records(c) == []  # nothing of it is stored
    # a gzip key that is not gzip, and a body that is not JSON: reports too
    s3.put_object(Bucket=s3_stack.bucket, Key=f"ingest/t/{c}-2.gz", Body=b"[]")
    s3.put_object(Bucket=s3_stack.bucket, Key=f"ingest/t/{c}-3.json", Body=b"{nope")
    wait_until(lambda: len(s3_support.reports(s3, s3_stack.bucket, c)) == 3, 20, "3 reports")


def test_restart_neither_repeats_nor_loses_objects(s3_stack: S3Stack, tmp_path: Path) -> None:
    """A second emulator on its own bucket and database, restarted in the middle."""
    bucket = f"restart-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "emulator.db"
    s3 = s3_support.client(s3_stack.endpoint_url)
    c = f"c-{uuid.uuid4().hex[:8]}"

    def start() -> EmbeddedEmulator:
        return EmbeddedEmulator(
            db=db,
            api_key="k",
            log_path=tmp_path / "emulator.log",
            s3_endpoint=s3_stack.endpoint_url,
            s3_bucket=bucket,
            s3_poll_s=0.1,
        )

    with start() as emu:  # creates the bucket
        api = Api(emu.base_url, "k")
        buckets = lambda: [b["Name"] for b in s3.list_buckets()["Buckets"]]  # noqa: E731
        wait_until(lambda: bucket in buckets(), 20, "bucket created")
        s3.put_object(Bucket=bucket, Key="a.json", Body=orjson.dumps(events_for(c, "m", [1, 2])))
        s3.put_object(Bucket=bucket, Key="b.json", Body=orjson.dumps(events_for(c, "m", [3])))
        wait_until(lambda: api.stats()["s3_objects_ingested"] == 2, 20, "2 objects")
    # written while the emulator is down: picked up after the restart
    s3.put_object(Bucket=bucket, Key="c.json", Body=orjson.dumps(events_for(c, "x", [4])))
    with start() as emu:
        api = Api(emu.base_url, "k")
        wait_until(lambda: api.stats()["s3_objects_ingested"] >= 1, 20, "c.json ingested")
        # overwritten with the same bytes: nothing to do; with new bytes: a new PUT, ingested
        s3.put_object(Bucket=bucket, Key="b.json", Body=orjson.dumps(events_for(c, "m", [3])))
        s3.put_object(Bucket=bucket, Key="a.json", Body=orjson.dumps(events_for(c, "y", [5])))
        wait_until(lambda: api.stats()["s3_objects_ingested"] >= 2, 20, "a.json again")
        stats = api.stats()
        assert stats["s3_objects_ingested"] == 2  # c.json and the new a.json only
        assert stats["duplicates"] == 0
        assert total(api, c) == (5, 15.0)
