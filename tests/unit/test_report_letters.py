"""``Worker`` writing the dead letters of S3 failure reports (``pipeline.letters``): handed
over by the watcher's thread, written by the partition's owner through the ledger (a record
whose letter is already in the DLQ gets none), waited for on revoke, and released from the
ledger once their report is no longer open."""

from __future__ import annotations

import threading
from collections.abc import Callable

from connector.pipeline.letters import OpenReports, ReportLetters
from connector.pipeline.worker import Worker
from connector.records import DeadLetter, SourceRecord
from tests.unit.test_worker import FakeDlq, FakeLedger, FakeSource, ledger, make, usage

__all__ = ["ledger", "make"]  # the fixtures, shared with test_worker

Make = Callable[..., tuple[Worker, FakeSource, FakeDlq]]
CLASS = "S3ObjectRejected"


def report(partition: int, offsets: list[int], gone: int | None = None) -> ReportLetters:
    letters = [
        DeadLetter(SourceRecord("t", partition, o, 1, None, usage(o)), "sink", CLASS, "rejected")
        for o in offsets
    ]
    gone_letter = None
    if gone is not None:
        record = SourceRecord("t", partition, gone, 0, b"ingest/x.ndjson.gz", None)
        gone_letter = DeadLetter(record, "sink", CLASS, "rejected (no longer in Kafka)")
    return ReportLetters("t", partition, letters, gone_letter)


def handed(worker: Worker, *items: ReportLetters | OpenReports) -> None:
    """What the watcher's thread does, then the main thread's next step."""
    for item in items:
        worker.reports.put(item)
    worker._reports()


def test_only_the_letters_not_in_the_dlq_yet_are_written_and_the_report_completes_on_ack(
    make: Make, ledger: FakeLedger
) -> None:
    """A crash after some letters of the report: those the ledger finds are not written again
    (the gone-offsets letter is matched only to a failure report's letter); the others go to
    DLQ partition P mod N with their uniqueId coordinates, and the report is complete once
    they are acknowledged."""
    worker, _source, dlq = make()
    worker._on_assign([("t", 1)])
    ledger.reports = {(1, 11)}  # the earlier attempt's letter of record 11
    ledger.existing = {(1, 10)}  # record 10 was dead-lettered when read (decode)
    job = report(1, [11, 12, 13], gone=10)
    handed(worker, job)
    written = [letter for letter, _ack, _wanted in dlq.letters]
    assert [(w.record.offset, w.error_class) for w in written] == [
        (12, CLASS),
        (13, CLASS),
        (10, CLASS),
    ]
    assert all(w.origin == f"t/1/{w.record.offset}" for w in written)
    assert job.found == 1 and not job.finished.is_set()
    assert worker.letters.in_flight(worker.checkpoint.partitions[("t", 1)]) == 3
    for i, (_letter, on_ack, wanted) in enumerate(dlq.letters):
        assert wanted()
        on_ack(100 + i)
    assert job.finished.is_set() and job.complete and job.written == 3
    assert {(1, 12), (1, 13), (1, 10)} <= ledger.reports  # kept as reported letters


def test_a_report_all_in_the_dlq_completes_at_once(make: Make, ledger: FakeLedger) -> None:
    worker, _source, dlq = make()
    worker._on_assign([("t", 0)])
    ledger.reports = {(0, 4), (0, 5), (0, 2)}
    job = report(0, [4, 5], gone=2)
    handed(worker, job)
    assert dlq.letters == [] and job.complete and job.found == 3


def test_a_report_of_a_partition_not_owned_stays_open(make: Make) -> None:
    worker, _source, dlq = make()
    worker._on_assign([("t", 0)])
    job = report(1, [3])
    handed(worker, job)
    assert job.finished.is_set() and not job.complete and dlq.letters == []


def test_a_revoke_waits_for_a_reports_letters_in_flight(make: Make, ledger: FakeLedger) -> None:
    """So the partition's next owner, reading the DLQ, finds them: the revoke returns only once
    they are acknowledged (or after shutdown_timeout_s; then the report stays open)."""
    worker, _source, dlq = make()
    worker._on_assign([("t", 0), ("t", 1)])
    job = report(0, [7, 8])
    handed(worker, job)

    def acknowledge() -> None:  # the broker answers while the revoke waits
        for i, (_letter, on_ack, _wanted) in enumerate(list(dlq.letters)):
            dlq.answers.put(lambda on_ack=on_ack, i=i: on_ack(i))

    threading.Timer(0.05, acknowledge).start()
    worker._on_revoke([("t", 0)])
    assert job.complete and job.written == 2  # acknowledged during the revoke's wait

    late = report(1, [9])
    handed(worker, late)
    worker._on_revoke([("t", 1)])  # never acknowledged: given up after shutdown_timeout_s
    assert late.finished.is_set() and not late.complete
    assert not dlq.letters[-1][2]()  # and no longer wanted: a failed delivery is dropped


def test_reports_no_longer_open_are_released_for_owned_partitions_only(
    make: Make, ledger: FakeLedger
) -> None:
    worker, _source, _dlq = make()
    worker._on_assign([("t", 0)])
    looked = OpenReports(frozenset({("t", 0), ("t", 3)}), {("t", 0): [(200, 399)]}, 1.0)
    handed(worker, looked, OpenReports(frozenset({("t", 0)}), {}, 2.0))
    assert ledger.released == [(0, [(200, 399)]), (0, [])]
