"""Dead-lettering a record: exactly one letter per source record.

* Within one assignment, a record gets one letter however many of its events were rejected:
  the parts rejected before the letter is acknowledged are folded into it, later ones are done
  at once.
* Across crashes and rebalances, a record that already has a letter in the DLQ (written before
  a ``kill -9``, or by the partition's previous owner) is done without a second one
  (``connector.dlq.ledger``).
* A record is done, for the commit, only once its letter is acknowledged (or was found).
* The letters of an S3 failure report (``ReportLetters``, from the watcher's thread) are
  written by the partition's owner through the same ledger: a record whose letter is already
  in the DLQ (a crash between the letters and the report's tag, a rebalance) is not
  dead-lettered again.  They concern records committed long ago, so they are not part of the
  checkpoint; the ledger keeps them (and its mark below them) until the report is released.

Only the worker's main thread uses it (``ReportLetters.finished`` is what the watcher waits on).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Iterable

from connector import metrics
from connector.dlq.ledger import DeadLetterLedger
from connector.dlq.publish import DeadLetterPublisher
from connector.errors import RecordError
from connector.pipeline.checkpoint import Checkpoint, PartitionState
from connector.records import DeadLetter, SourceRecord

log = logging.getLogger("connector.worker")


class ReportLetters:
    """The dead letters of one failure report about ``topic``/``partition``, handed by the
    watcher's thread to the worker's main thread (``DeadLetters.take_reports``).

    ``letters``: one per re-read record (source offset = the record's), in offset order;
    ``gone``: the letter standing for the offsets no longer in Kafka, with the last of them as
    source offset; ``last``: the object's last offset.  ``finished`` is set once every letter
    is in the DLQ, acknowledged now or found there (``complete``), or when the partition was
    not (or no longer) this worker's (not ``complete``: the report stays open).
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        letters: list[DeadLetter],
        gone: DeadLetter | None = None,
        last: int = -1,
    ) -> None:
        self.topic, self.partition, self.last = topic, partition, last
        self.letters, self.gone = letters, gone
        self.written = self.found = 0
        self.complete = False
        self.finished = threading.Event()
        self._waiting = 0

    def finish(self, complete: bool) -> None:
        self.complete = complete
        self.finished.set()


class _Letter:
    """A record's dead letter: acknowledged yet, and its parts rejected while it was not."""

    __slots__ = ("acked", "extra")

    def __init__(self) -> None:
        self.acked = False
        self.extra = 0


@dataclasses.dataclass(frozen=True)
class OpenReports:
    """After a round of the watcher, begun at ``since`` (``time.monotonic()``): of the failure
    reports about ``partitions`` (looked at in full), those not tagged handled cover these
    source offset ranges (inclusive)."""

    partitions: frozenset[tuple[str, int]]
    ranges: dict[tuple[str, int], list[tuple[int, int]]]
    since: float


class DeadLetters:
    def __init__(
        self,
        publisher: DeadLetterPublisher,
        ledger: DeadLetterLedger,
        origin: Callable[[SourceRecord], str],
    ) -> None:
        self._publisher = publisher
        self._ledger = ledger
        self._origin = origin  # the coordinates a record's uniqueIds derive from
        self._letters: dict[tuple[PartitionState, int], _Letter] = {}
        self._reports: dict[PartitionState, list[ReportLetters]] = {}

    def reject(self, record: SourceRecord, exc: RecordError, state: PartitionState) -> None:
        """One part of ``record`` (or all of it) cannot be delivered: see the module contract."""
        offset = record.offset
        known = self._letters.get((state, offset))
        if known is not None:
            if known.acked:
                state.done(offset)
            else:
                known.extra += 1
            return
        entry = self._letters[(state, offset)] = _Letter()
        found = self._ledger.lettered(state, offset)
        if found is not None:
            entry.acked = True
            metrics.DEAD_LETTERS_FOUND.inc()
            log.info(
                "%s/%d@%d already has a dead letter (DLQ offset %d): not written again",
                record.topic,
                record.partition,
                offset,
                found,
            )
            state.done(offset)
            return
        _topic, partition = self._ledger.producing(state, offset)
        letter = DeadLetter(
            record, exc.stage, type(exc).__name__, str(exc), exc.http_status, self._origin(record)
        )

        def on_ack(dlq_offset: int) -> None:
            entry.acked = True
            self._ledger.acked(state, offset, dlq_offset)
            state.done(offset, 1 + entry.extra)
            entry.extra = 0

        self._publisher.publish(letter, on_ack, lambda: state.active, partition)

    def report(self, job: ReportLetters, state: PartitionState | None) -> None:
        """Write the letters of a failure report that are not in the DLQ yet (see the module
        contract); ``state``: the partition's, None when this worker does not own it."""
        if state is None or not state.active:
            job.finish(False)
            return
        ledger = self._ledger
        todo: list[DeadLetter] = []
        for letter in job.letters:
            if ledger.lettered(state, letter.record.offset) is None:
                todo.append(letter)
            else:
                job.found += 1
        gone = job.gone
        if gone is not None:
            # A report's letters are written in offset order (the gone offsets' letter first)
            # and acknowledged in that order, so a report letter at or past the last gone
            # offset means an earlier attempt wrote a letter for everything before it.
            past = range(gone.record.offset, job.last + 1)
            if any(ledger.reported(state, o) is not None for o in past):
                job.found += 1
            else:
                todo.insert(0, gone)
        if job.found:
            metrics.DEAD_LETTERS_FOUND.inc(job.found)
        if not todo:
            job.finish(True)
            return
        job._waiting = len(todo)
        self._reports.setdefault(state, []).append(job)
        for letter in todo:
            origin = self._origin(letter.record)
            self._report_one(job, dataclasses.replace(letter, origin=origin), state)

    def take_reports(
        self, reports: queue.SimpleQueue[ReportLetters | OpenReports], checkpoint: Checkpoint
    ) -> None:
        """What the S3 failure-report watcher handed over: letters to write (``report``) and
        reports no longer open (``release``), for the partitions owned now."""
        get = checkpoint.get
        while not reports.empty():
            item = reports.get_nowait()
            if isinstance(item, ReportLetters):
                self.report(item, get(item.topic, item.partition))
                continue
            for key in item.partitions:
                state = get(*key)
                if state is not None:
                    self.release(state, item)

    def _report_one(self, job: ReportLetters, letter: DeadLetter, state: PartitionState) -> None:
        offset = letter.record.offset
        _topic, partition = self._ledger.producing(state, offset)

        def on_ack(dlq_offset: int) -> None:
            self._ledger.acked(state, offset, dlq_offset, reported=True)
            job.written += 1
            job._waiting -= 1
            if not job._waiting and not job.finished.is_set():
                jobs = self._reports.get(state, [])
                if job in jobs:
                    jobs.remove(job)
                job.finish(True)

        self._publisher.publish(letter, on_ack, lambda: state.active, partition)

    def in_flight(self, state: PartitionState) -> int:
        """Letters of ``state``'s partition not acknowledged yet (a revoke waits for them)."""
        return self._ledger.in_flight(state)

    def release(self, state: PartitionState, looked: OpenReports) -> None:
        """The watcher looked at every failure report about ``state``'s partition: only those
        covering the given ranges are not tagged handled yet (``DeadLetterLedger.release``)."""
        key = (state.topic, state.partition)
        self._ledger.release(state, looked.ranges.get(key, []), looked.since)

    def committed(self, commits: Iterable[tuple[PartitionState, int]]) -> None:
        """After a commit: store the ledger's marks and forget the letters of done records."""
        self._ledger.committed(commits)
        if self._letters:
            self._letters = {
                k: v for k, v in self._letters.items() if k[0].active and k[1] in k[0].pending
            }

    def forget(self, state: PartitionState) -> None:
        """The partition was revoked or lost: its unfinished reports stay open."""
        for job in self._reports.pop(state, ()):
            job.finish(False)
        self._ledger.forget(state)

    def close(self) -> None:
        self._ledger.close()
