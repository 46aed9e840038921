"""The S3 failure-report watcher (``sinks.s3_failures.FailureWatcher``) for an object whose
records retention deleted from Kafka: one letter carrying the object key and the reason,
nothing committed, and never a second letter (a second round, a restart, a restart after a
crash between the letter and the report's tag).

Why not an integration test: the Tansu broker the integration tests use cannot move a log
start.  DeleteRecords (``AdminClient.delete_records``) makes it panic ("not yet implemented",
``tansu-storage/src/dynostore.rs``; the connection drops, the call fails with
``_TRANSPORT``), and it does not enforce ``retention.ms`` (a topic with ``retention.ms`` 1000
and ``segment.ms`` 500 kept every record, log start 0, after 10 s); its other storage engines
(postgres, sqlite, slatedb) are not built in.  So here the real watcher runs against S3 (moto,
in process), hands its letters to a real ``Worker`` (``test_worker``'s stand-ins for the DLQ
producer and the ledger), and reads Kafka through a stand-in consumer whose log starts past
the object's first offsets: the one thing the broker cannot do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from confluent_kafka import TopicPartition
from moto import mock_aws
from prometheus_client import REGISTRY

from connector.aws import report_key
from connector.pipeline.letters import OpenReports, ReportLetters
from connector.pipeline.worker import Worker
from connector.settings import Settings
from connector.sinks.s3 import SUFFIX
from connector.sinks.s3_failures import FailureWatcher, is_tagged
from tests.unit.test_worker import FakeDlq, FakeLedger, FakeSource, Msg, ledger, make, usage

__all__ = ["ledger", "make"]  # the fixtures, shared with test_worker

Make = Callable[..., tuple[Worker, FakeSource, FakeDlq]]
BUCKET = "amberflo-ingest"
PREFIX = "ingest/acme"
OBJECT = f"{PREFIX}/01-01-2026/t.0.100-199{SUFFIX}"
REASON = "BAD_REQUEST: 1 of 100 events\nfield meterTimeInMillis: required"


class Reader:
    """``connector.kafka.open_reader``'s consumer over partition t[0], whose log starts at
    ``low`` (retention deleted everything before) and ends at ``high``."""

    def __init__(self, low: int, high: int, values: dict[int, bytes]) -> None:
        self.low, self.high, self.values = low, high, values
        self.assigned: list[TopicPartition] = []
        self.position = -1
        self.closed = False

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        assert (tp.topic, tp.partition) == ("t", 0)
        return self.low, self.high

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = tps
        (tp,) = tps
        assert tp.offset >= self.low, "read below the log start"
        self.position = tp.offset

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def consume(self, n: int, timeout: float) -> list[Msg]:
        out = []
        while len(out) < n and self.position < self.high:
            out.append(Msg("t", 0, self.position, self.values[self.position]))
            self.position += 1
        return out

    def close(self) -> None:
        self.closed = True


class Stack:
    """S3 with the report, the worker owning t[0], and the watcher handing it letters the
    way ``run`` does (here synchronously, the DLQ acknowledging at once)."""

    def __init__(self, s3: Any, make: Make, reader: Reader, monkeypatch: pytest.MonkeyPatch):
        self.s3, self.make, self.reader = s3, make, reader
        monkeypatch.setattr("connector.kafka.open_reader", self._open)
        self.opened = 0
        self.restart()

    def _open(self, _settings: Settings, _group: str, _extra: object = None) -> Reader:
        self.opened += 1
        return self.reader

    def restart(self) -> None:
        """A new process: a new worker (the same DLQ, as the ledger reads it) and watcher."""
        self.worker, self.source, self.dlq = self.make()
        self.worker._on_assign([("t", 0)])
        settings = Settings(
            kafka={"topics": ["t"], "bootstrap_servers": "127.0.0.1:9"},
            amberflo={"api_key": "k"},
            sink={"mode": "s3"},
            s3={"bucket": BUCKET, "prefix": PREFIX, "region": "us-east-1"},
            transform={"unique_id_topic_ids": False},
        )
        self.watcher = FailureWatcher(settings, lambda: {("t", 0)}, threading.Event(), self.submit)
        self.handed: list[ReportLetters | OpenReports] = []
        self.acked = 0

    def submit(self, item: ReportLetters | OpenReports) -> None:
        self.handed.append(item)
        self.worker.reports.put(item)
        self.worker.letters.take_reports(self.worker.reports, self.worker.checkpoint)
        while self.acked < len(self.dlq.letters):  # each letter acknowledged once
            _letter, on_ack, wanted = self.dlq.letters[self.acked]
            assert wanted()
            on_ack(1000 + self.acked)
            self.acked += 1


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=report_key(OBJECT), Body=REASON.encode())
        yield client


def reports(result: str) -> float:
    name = "amberflo_connector_s3_failure_reports_total"
    return REGISTRY.get_sample_value(name, {"result": result}) or 0.0


def test_an_object_whose_records_are_all_gone_gets_one_letter_with_its_key_and_reason(
    s3: Any, make: Make, ledger: FakeLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = Reader(low=500, high=600, values={})  # offsets 100-199 deleted long ago
    stack = Stack(s3, make, reader, monkeypatch)
    before = (reports("letter"), reports("records"))
    assert stack.watcher.poll_once() == 1
    [(letter, _ack, _wanted)] = stack.dlq.letters
    record = letter.record
    assert (record.topic, record.partition, record.offset) == ("t", 0, 199)  # the last gone
    assert record.key == OBJECT.encode() and record.value is None
    assert (letter.stage, letter.error_class) == ("sink", "S3ObjectRejected")
    assert letter.message == (
        f"Amberflo rejected object s3://{BUCKET}/{OBJECT}: BAD_REQUEST: 1 of 100 events | "
        "field meterTimeInMillis: required (offsets 100-199 are no longer in Kafka: this "
        "letter carries the object key, not the records)"
    )
    assert letter.origin == "t/0/199"
    assert reader.assigned == []  # nothing left to read: the reader never fetched
    [job] = [h for h in stack.handed if isinstance(h, ReportLetters)]
    assert job.complete and (job.written, job.found) == (1, 0)
    assert is_tagged(s3, BUCKET, report_key(OBJECT))
    assert (reports("letter"), reports("records")) == (before[0] + 1, before[1])
    assert stack.source.commits == []  # a report commits nothing
    assert ledger.reports == {(0, 199)} and ledger.existing == set()

    assert stack.watcher.poll_once() == 0  # a second round: the report is tagged
    stack.restart()
    assert stack.watcher.poll_once() == 0  # a restart: tagged
    assert stack.dlq.letters == [] and stack.source.commits == []

    # A crash after the letter, before the tag: the restarted owner finds the letter (the
    # ledger reads it in the DLQ) and writes none, then tags the report.
    s3.delete_object_tagging(Bucket=BUCKET, Key=report_key(OBJECT))
    stack.restart()
    assert stack.watcher.poll_once() == 1
    assert stack.dlq.letters == []
    [job] = [h for h in stack.handed if isinstance(h, ReportLetters)]
    assert job.complete and (job.written, job.found) == (0, 1)
    assert is_tagged(s3, BUCKET, report_key(OBJECT))
    assert reports("letter") == before[0] + 2  # handled again (closed once per process)


def test_an_object_partly_gone_gets_the_gone_letter_first_then_one_per_record_left(
    s3: Any, make: Make, ledger: FakeLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {o: usage(o) for o in range(150, 260)}
    values[160] = b"{bad"  # dead-lettered when it was read: not in the object, no new letter
    values[161] = usage(161, meterValue=None)  # fails mapping too
    reader = Reader(low=150, high=260, values=values)
    stack = Stack(s3, make, reader, monkeypatch)
    before = reports("records")
    assert stack.watcher.poll_once() == 1
    offsets = [letter.record.offset for letter, _a, _w in stack.dlq.letters]
    assert offsets == [149, *(o for o in range(150, 200) if o not in (160, 161))]
    gone = stack.dlq.letters[0][0]
    assert gone.record.key == OBJECT.encode() and gone.record.value is None
    assert "(offsets 100-149 are no longer in Kafka" in gone.message
    rest = [letter for letter, _a, _w in stack.dlq.letters[1:]]
    assert all(letter.record.value == values[letter.record.offset] for letter in rest)
    assert all(letter.message.endswith("field meterTimeInMillis: required") for letter in rest)
    assert reader.assigned[0].offset == 150  # from the log start
    assert reports("records") == before + 1
    assert stack.source.commits == []
    stack.restart()
    assert stack.watcher.poll_once() == 0 and stack.dlq.letters == []
    assert stack.opened == 1
