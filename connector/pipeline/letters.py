"""Dead-lettering a record: exactly one letter per source record.

* Within one assignment, a record gets one letter however many of its events were rejected:
  the parts rejected before the letter is acknowledged are folded into it, later ones are done
  at once.
* Across crashes and rebalances, a record that already has a letter in the DLQ (written before
  a ``kill -9``, or by the partition's previous owner) is done without a second one
  (``connector.dlq.ledger``).
* A record is done, for the commit, only once its letter is acknowledged (or was found).

Only the worker's main thread uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from connector import metrics
from connector.dlq.ledger import DeadLetterLedger
from connector.dlq.publish import DeadLetterPublisher
from connector.errors import RecordError
from connector.pipeline.checkpoint import PartitionState
from connector.records import DeadLetter, SourceRecord

log = logging.getLogger("connector.worker")


class _Letter:
    """A record's dead letter: acknowledged yet, and its parts rejected while it was not."""

    __slots__ = ("acked", "extra")

    def __init__(self) -> None:
        self.acked = False
        self.extra = 0


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

    def committed(self, commits: Iterable[tuple[PartitionState, int]]) -> None:
        """After a commit: store the ledger's marks and forget the letters of done records."""
        self._ledger.committed(commits)
        if self._letters:
            self._letters = {
                k: v for k, v in self._letters.items() if k[0].active and k[1] in k[0].pending
            }

    def forget(self, state: PartitionState) -> None:
        """The partition was revoked or lost."""
        self._ledger.forget(state)

    def close(self) -> None:
        self._ledger.close()
