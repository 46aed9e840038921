"""Dead letters exactly once per source record, across crashes and rebalances.

A record is re-read whenever its partition's committed offset is behind it: after a crash, a
``kill -9``, a lost assignment.  If it was dead-lettered before, writing its dead letter again
would put two letters of one record in the DLQ.  So before a record is dead-lettered, the
ledger answers whether the DLQ already holds a letter for it, and the worker skips it if so.

Where the letters are
---------------------
Every dead letter of source partition ``P`` goes to DLQ partition ``P mod N`` (``N``: the DLQ
topic's partitions), so the letters of one partition are in one DLQ partition, in the order
they were acknowledged.  A letter is matched to a record by its source coordinates (the
``amberflo.source.*`` or ``__connect.errors.*`` headers) and, when its ``amberflo.origin``
names them with a topic id, by that id too (a recreated topic's record is not matched to the
old incarnation's letter).  Only an exact match skips a record: the ledger can produce a
duplicate letter (when it reads too little), never lose one.

How much to read: marks
-----------------------
A *mark* of ``P`` is a DLQ offset below which no letter of a record at or after ``P``'s
committed offset lies (nor one of a failure report still open: below).  After each commit of
``P`` (a later one is never earlier), the mark is ``min(DLQ offsets of the letters of records
>= the committed offset and of open reports' letters, the lowest offset the next letter can
get)`` and it is committed, in the consumer group ``<group id>.dlq-marks``, as
the offset of ``P`` (the source topic's partition: the group stores nothing else).  An older
mark stays valid for a later commit, so the source commit goes first and a crash between
the two only makes the next reader read more.  No mark (a new group, an expired one, a
connector older than 0.2) means reading the DLQ partition from its start.

A partition is read only when one of its records is about to be dead-lettered for the first
time in an assignment: from its mark to the end (end-of-partition, which Tansu reports at
the true end even though its high watermark is lower), once per assignment; after that the
ledger knows every letter of it because the worker reports each one it writes.

Letters of failure reports
--------------------------
In s3 mode a record's letter can also come long after its offset was committed: Amberflo's
failure report about an object (``sinks.s3_failures``) dead-letters the object's records.
Those letters (class ``S3ObjectRejected``) go through the same questions, by the owner of the
partition, and are *reported* letters: they stay in the ledger, and hold the mark below
them, whatever the committed offset, until the watcher says their report is no longer open
(``release``: the report is tagged handled, or gone).  So the mark of ``P`` is also below
every letter of a report about ``P`` that is not tagged yet, and a crash between the letters
and the tag leaves them inside what the next owner reads.  The range read stays bounded by
the letters of uncommitted records and of reports in progress (normally seconds of letters),
not by how long ago the reported records were committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connector.dlq.view import DeadLetterView
from connector.errors import FatalError
from connector.kafka import client_config, ensure_topics
from connector.settings import Settings

if TYPE_CHECKING:
    from connector.pipeline.checkpoint import PartitionState

log = logging.getLogger("connector.dlq")

REPORTED_CLASS = "S3ObjectRejected"
"""The error class of the letters of S3 failure reports (``sinks.s3_failures``)."""

SCAN_IDLE_S = 10.0
"""Longest wait, with nothing read, for the end of a DLQ partition; then the letters found so
far are used (a record may then get a second letter, never none)."""


@dataclass
class _Partition:
    """What the ledger knows of one assignment of one source partition."""

    dlq: tuple[str, int]  # (DLQ topic, partition) its letters go to
    letters: dict[int, int] = field(default_factory=dict)  # source offset → DLQ offset
    producing: dict[int, int] = field(default_factory=dict)  # source offset → lowest DLQ offset
    reported: dict[int, int] = field(default_factory=dict)  # failure reports' letters, ditto
    mark: int | None = None  # last mark committed
    loaded_at: float = field(default_factory=time.monotonic)  # when the DLQ was read


class DeadLetterLedger:
    """Only the worker's main thread uses it.  ``incarnation(topic)`` is the ``<topic>`` part
    of derived uniqueIds' coordinates (``name@<topic id>`` or the name)."""

    def __init__(self, settings: Settings, incarnation: Callable[[str], str]) -> None:
        self._settings = settings
        self._incarnation = incarnation
        self.group = f"{settings.kafka.group_id}.dlq-marks"
        self._consumer: Consumer | None = None
        self._partitions_of: dict[str, int] = {}
        self._next: dict[tuple[str, int], int] = {}  # DLQ partition → lowest next offset
        self._known: dict[PartitionState, _Partition] = {}

    # -- where letters go ----------------------------------------------------------------
    def target(self, topic: str, partition: int) -> tuple[str, int]:
        """The DLQ topic and partition of the letters of ``topic``/``partition``."""
        dlq = self._settings.dlq_topic_for(topic)
        n = self._partitions_of.get(dlq)
        if n is None:
            ensure_topics(self._settings, {dlq})
            n = self._partitions_of[dlq] = self._partition_count(dlq)
        return dlq, partition % n

    # -- the questions the worker asks ---------------------------------------------------
    def lettered(self, state: PartitionState, offset: int) -> int | None:
        """The DLQ offset of the letter the record at ``offset`` already has, or None."""
        known = self._known.get(state) or self._load(state)
        found = known.letters.get(offset)
        return known.reported.get(offset) if found is None else found

    def reported(self, state: PartitionState, offset: int) -> int | None:
        """The DLQ offset of a failure report's letter with source ``offset``, or None."""
        known = self._known.get(state) or self._load(state)
        return known.reported.get(offset)

    def producing(self, state: PartitionState, offset: int) -> tuple[str, int]:
        """The letter of ``offset`` is being produced; returns its DLQ topic and partition."""
        known = self._known.get(state) or self._load(state)
        known.producing[offset] = self._next.get(known.dlq, 0)
        return known.dlq

    def acked(
        self, state: PartitionState, offset: int, dlq_offset: int, reported: bool = False
    ) -> None:
        """The letter of ``offset`` is in the DLQ at ``dlq_offset`` (``reported``: a failure
        report's, kept until ``release``)."""
        known = self._known.get(state)
        if known is None:
            return
        known.producing.pop(offset, None)
        (known.reported if reported else known.letters)[offset] = dlq_offset
        if dlq_offset + 1 > self._next.get(known.dlq, 0):
            self._next[known.dlq] = dlq_offset + 1

    def in_flight(self, state: PartitionState) -> int:
        """Letters of ``state``'s partition handed to the producer and not acknowledged."""
        known = self._known.get(state)
        return len(known.producing) if known is not None else 0

    def release(
        self, state: PartitionState, open_ranges: Iterable[tuple[int, int]], since: float
    ) -> None:
        """Every failure report about ``state``'s partition was looked at, from ``since``
        (``time.monotonic()``) on: keep only the reported letters inside ``open_ranges``
        (source offsets, inclusive: the reports not tagged handled); the others no longer
        hold the mark.  Nothing is released when the DLQ was read after ``since``: it may
        hold letters of a report that round did not see (written by another owner since)."""
        known = self._known.get(state)
        if known is None or not known.reported or known.loaded_at > since:
            return
        ranges = list(open_ranges)
        known.reported = {
            o: d for o, d in known.reported.items() if any(a <= o <= b for a, b in ranges)
        }

    def forget(self, state: PartitionState) -> None:
        self._known.pop(state, None)

    # -- marks ---------------------------------------------------------------------------
    def committed(self, commits: Iterable[tuple[PartitionState, int]]) -> None:
        """After the source commits: drop what is behind them and commit the new marks."""
        marks: list[TopicPartition] = []
        updates: list[tuple[_Partition, int]] = []
        for state, offset in commits:
            known = self._known.get(state)
            if known is None:
                continue  # never read: its stored mark stays as good as it was
            known.letters = {o: d for o, d in known.letters.items() if o >= offset}
            lows = [*known.letters.values(), *known.producing.values(), *known.reported.values()]
            mark = min([*lows, self._next.get(known.dlq, 0)])
            if mark != known.mark:
                marks.append(TopicPartition(state.topic, state.partition, mark))
                updates.append((known, mark))
        if not marks:
            return
        try:
            self._reader().commit(offsets=marks, asynchronous=False)
        except KafkaException as exc:  # an older mark stays valid: only more to read
            log.warning("could not store the dead-letter marks in %s: %s", self.group, exc)
            return
        for known, mark in updates:
            known.mark = mark

    # -- reading the DLQ -----------------------------------------------------------------
    def _load(self, state: PartitionState) -> _Partition:
        known = self._known[state] = _Partition(self.target(state.topic, state.partition))
        dlq, dlq_partition = known.dlq
        reader = self._reader()
        try:
            [stored] = reader.committed([TopicPartition(state.topic, state.partition)], 10)
            if stored.error is not None:
                raise KafkaException(stored.error)
        except KafkaException as exc:
            raise FatalError(
                f"cannot read the dead-letter marks in consumer group {self.group!r} ({exc}); "
                f"the connector needs READ on that group and on topic {dlq!r}"
            ) from exc
        start = stored.offset if stored.offset >= 0 else OFFSET_BEGINNING
        known.mark = stored.offset if stored.offset >= 0 else None
        key = self._incarnation(state.topic)
        started = time.monotonic()
        end, read = self._scan(reader, dlq, dlq_partition, start, state, key, known)
        if end is None and start != OFFSET_BEGINNING:  # a mark beyond the end: a new DLQ topic
            end, more = self._scan(reader, dlq, dlq_partition, OFFSET_BEGINNING, state, key, known)
            read += more
        if end is not None and end > self._next.get(known.dlq, 0):
            self._next[known.dlq] = end
        log.info(
            "%s[%d]: read %d dead letters of %s[%d] from %s in %.2fs; %d are of this partition",
            state.topic,
            state.partition,
            read,
            dlq,
            dlq_partition,
            "the start" if start == OFFSET_BEGINNING else f"offset {start}",
            time.monotonic() - started,
            len(known.letters) + len(known.reported),
        )
        return known

    def _scan(
        self,
        reader: Consumer,
        dlq: str,
        partition: int,
        start: int,
        state: PartitionState,
        key: str,
        known: _Partition,
    ) -> tuple[int | None, int]:
        """Read ``dlq``/``partition`` from ``start`` to its end, adding the letters of
        ``state``'s partition to ``known`` (a failure report's to ``reported``); returns (the
        end offset or None on timeout, letters read)."""
        reader.assign([TopicPartition(dlq, partition, start)])
        last = time.monotonic()
        read = 0
        try:
            while time.monotonic() - last < SCAN_IDLE_S:
                for msg in reader.consume(500, 0.2):
                    last = time.monotonic()
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            return int(msg.offset() or 0), read
                        if err.fatal():
                            raise FatalError(f"reading dead-letter topic {dlq!r}: {err.str()}")
                        log.warning("reading dead-letter topic %s: %s", dlq, err.str())
                        continue
                    read += 1
                    letter = DeadLetterView.from_message(msg)
                    if _same_record(letter, state, key):
                        kind = known.reported if _reported(letter) else known.letters
                        kind[int(letter.source_offset or 0)] = int(msg.offset() or 0)
            log.warning(
                "no end of %s[%d] after %.0fs without a record", dlq, partition, SCAN_IDLE_S
            )
            return None, read
        finally:
            reader.unassign()

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **client_config(self._settings),
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 10,
                    "client.id": "amberflo-connector-dlq-ledger",
                }
            )
        return self._consumer

    def _partition_count(self, dlq: str) -> int:
        try:
            meta = self._reader().list_topics(dlq, timeout=10).topics.get(dlq)
        except KafkaException as exc:
            raise FatalError(
                f"cannot read the metadata of dead-letter topic {dlq!r}: {exc}"
            ) from exc
        if meta is None or meta.error is not None or not meta.partitions:
            raise FatalError(f"cannot read the partitions of dead-letter topic {dlq!r}")
        return len(meta.partitions)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _same_record(letter: DeadLetterView, state: PartitionState, key: str) -> bool:
    """Is ``letter`` a dead letter of a record of ``state``'s partition (same incarnation)?"""
    if letter.source_topic != state.topic or letter.source_partition != state.partition:
        return False
    if letter.source_offset is None:
        return False
    topic_id = letter.incarnation
    return topic_id is None or f"{state.topic}@{topic_id}" == key


def _reported(letter: DeadLetterView) -> bool:
    """Is ``letter`` one of a failure report (either header style)?"""
    return (letter.error_class or "").rpartition(".")[2] == REPORTED_CLASS
