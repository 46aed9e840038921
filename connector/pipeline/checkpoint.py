"""Per-partition offset watermarks: commit only what is fully done.

A record is *done* when every meter event made from it was accepted by Amberflo (HTTP 200) or
its dead letter was acknowledged by the DLQ topic.  Batches complete out of order, so the
committable offset of a partition is the lowest offset still pending (or, with nothing
pending, one past the highest offset seen) — never beyond an unfinished record.

Each assignment of a partition gets a fresh ``PartitionState``; work refers to the state it
was tracked under, so a completion that arrives after the partition was revoked (and maybe
assigned again) cannot touch the new assignment's bookkeeping.
"""

from __future__ import annotations

import bisect
import sys


class PartitionState:
    __slots__ = ("active", "committed", "marks", "next_offset", "partition", "pending", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.pending: dict[int, int] = {}  # offset → parts still outstanding
        self.next_offset: int | None = None  # one past the highest offset tracked
        self.committed: int | None = None  # last offset handed to commit()
        self.marks: list[tuple[int, int]] = []  # (offset, timestamp ms), increasing offsets
        self.active = True

    def mark(self, offset: int, timestamp_ms: int) -> None:
        """Note a consumed record's timestamp. The worker calls it for the first record of
        each run of this partition in a poll, not per record (see ``oldest_timestamp_ms``)."""
        self.marks.append((offset, timestamp_ms))

    def track(self, offset: int, parts: int) -> None:
        self.pending[offset] = parts
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def skip(self, offset: int) -> None:
        """A record with nothing to deliver: done as soon as it is seen."""
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def done(self, offset: int, parts: int = 1) -> None:
        """Mark ``parts`` of the record at ``offset`` finished (ignored once revoked)."""
        if not self.active:
            return
        left = self.pending.get(offset)
        if left is None:
            return
        if left <= parts:
            del self.pending[offset]
        else:
            self.pending[offset] = left - parts

    def oldest_timestamp_ms(self) -> int | None:
        """Kafka timestamp of the oldest record not done yet; None with nothing pending.

        Taken from the last mark at or below the lowest pending offset, i.e. the first record
        of the poll that brought it: exact to within one poll, and never younger than the
        true one while timestamps grow with offsets.  Prunes the marks it no longer needs.
        """
        marks = self.marks
        if not self.pending:
            marks.clear()
            return None
        i = bisect.bisect_right(marks, (min(self.pending), sys.maxsize)) - 1
        if i < 0:
            return None
        if i:
            del marks[:i]
        return marks[0][1]

    def committable(self) -> int | None:
        """The offset to commit (Kafka's convention: the next record to read), or None."""
        if self.pending:
            return min(self.pending)
        return self.next_offset


class Checkpoint:
    """The states of the partitions this worker owns now."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], PartitionState] = {}

    def assign(self, topic: str, partition: int) -> PartitionState:
        old = self.partitions.get((topic, partition))
        if old is not None:
            old.active = False
        state = PartitionState(topic, partition)
        self.partitions[(topic, partition)] = state
        return state

    def revoke(self, topic: str, partition: int) -> None:
        state = self.partitions.pop((topic, partition), None)
        if state is not None:
            state.active = False

    def get(self, topic: str, partition: int) -> PartitionState | None:
        """The state of a partition this worker owns now; None for any other partition.

        Records are fetched only after ``on_assign`` and librdkafka drops what it fetched for
        a partition once it is revoked, so a record of an unowned partition should never
        reach the worker.  If one does, it must not be tracked: a state created for it could
        commit an offset for a partition that another worker owns (past records that worker
        has not finished).  The worker drops such a record; its owner reads it.
        """
        return self.partitions.get((topic, partition))

    @property
    def pending_records(self) -> int:
        return sum(len(s.pending) for s in self.partitions.values())

    def to_commit(self, only: set[tuple[str, int]] | None = None) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) for every partition whose watermark moved."""
        out = []
        for key, state in self.partitions.items():
            if only is not None and key not in only:
                continue
            offset = state.committable()
            if offset is not None and offset != state.committed:
                out.append((state.topic, state.partition, offset))
        return out

    def committed(self, topic: str, partition: int, offset: int) -> None:
        state = self.partitions.get((topic, partition))
        if state is not None:
            state.committed = offset
