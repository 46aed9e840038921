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


def report(
    partition: int, offsets: list[int], gone: int | None = None, last: int = 19
) -> ReportLetters:
    """The letters the watcher makes for an object ending at ``last``: ``offsets`` re-read,
    and ``gone``, the last offset no longer in Kafka (if any)."""
    letters = [
        DeadLetter(SourceRecord("t", partition, o, 1, None, usage(o)), "sink", CLASS, "rejected")
        for o in offsets
    ]
    gone_letter = None
    if gone is not None:
        record = SourceRecord("t", partition, gone, 0, b"ingest/x.ndjson.gz", None)
        gone_letter = DeadLetter(record, "sink", CLASS, "rejected (no longer in Kafka)")
    return ReportLetters("t", partition, letters, gone_letter, last)


def handed(worker: Worker, *items: ReportLetters | OpenReports) -> None:
    """What the watcher's thread does, then the main thread's next step."""
    for item in items:
        worker.reports.put(item)
    worker.letters.take_reports(worker.reports, worker.checkpoint)


def written(dlq: FakeDlq) -> list[int]:
    return [letter.record.offset for letter, _ack, _wanted in dlq.letters]


def test_only_the_letters_not_in_the_dlq_yet_are_written_and_the_report_completes_on_ack(
    make: Make, ledger: FakeLedger
) -> None:
    """A crash after some letters of the report: those the ledger finds (of the report, or of
    the record itself) are not written again; the others go to DLQ partition P mod N with
    their uniqueId coordinates, and the report is complete once they are acknowledged."""
    worker, _source, dlq = make()
    worker._on_assign([("t", 1)])
    ledger.reports = {(1, 11)}  # the earlier attempt's letter of record 11
    ledger.existing = {(1, 14)}  # a letter of record 14 written when it was read
    job = report(1, [11, 12, 13, 14])
    handed(worker, job)
    assert written(dlq) == [12, 13]
    assert all(letter.error_class == CLASS for letter, _a, _w in dlq.letters)
    assert [letter.origin for letter, _a, _w in dlq.letters] == ["t/1/12", "t/1/13"]
    assert job.found == 2 and not job.finished.is_set()
    assert worker.letters.in_flight(worker.checkpoint.partitions[("t", 1)]) == 2
    for i, (_letter, on_ack, wanted) in enumerate(dlq.letters):
        assert wanted()
        on_ack(100 + i)
    assert job.finished.is_set() and job.complete and job.written == 2
    assert {(1, 12), (1, 13)} <= ledger.reports  # kept as reported letters


def test_a_report_all_in_the_dlq_completes_at_once(make: Make, ledger: FakeLedger) -> None:
    worker, _source, dlq = make()
    worker._on_assign([("t", 0)])
    ledger.reports = {(0, 4), (0, 5), (0, 3)}
    job = report(0, [4, 5], gone=3)
    handed(worker, job)
    assert dlq.letters == [] and job.complete and job.found == 3


def test_offsets_gone_get_their_letter_first_unless_an_earlier_attempt_got_past_them(
    make: Make, ledger: FakeLedger
) -> None:
    """Offsets 0-19; the first attempt wrote letters of records 0-7 and crashed; retention then
    deleted offsets 0-11.  The records 8-11 have no letter: the gone-offsets letter (source
    offset 11) is written, first.  Had the first attempt got to record 12, everything before
    it would have its letter (written in order): no gone-offsets letter."""
    worker, _source, dlq = make()
    worker._on_assign([("t", 0), ("t", 1)])
    ledger.reports = {(0, o) for o in range(8)}
    handed(worker, report(0, list(range(12, 20)), gone=11))
    assert written(dlq) == [11, *range(12, 20)]
    ledger.reports = {(1, o) for o in range(13)}
    handed(worker, report(1, list(range(12, 20)), gone=11))
    assert written(dlq)[9:] == list(range(13, 20))


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
