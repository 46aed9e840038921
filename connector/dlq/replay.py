"""Replaying dead letters (``amberflo-connector dlq replay``).

Replay contract
---------------
``replay`` republishes each selected dead letter to its source topic (or ``to``) with the
original key, value, timestamp and headers minus the error headers, plus:

* ``amberflo.origin`` — ``topic/partition/offset`` of the record's *first* publication (kept
  when the dead letter already has one), which ``connector.formats.ids`` prefers over the
  record's own coordinates, so a replayed record derives exactly the uniqueIds it would have
  had;
* ``amberflo.replay.count`` — the previous count plus one;
* ``amberflo.replay.source`` — ``dlq-topic/partition/offset`` of the dead letter it came from.

It goes to partition ``source partition mod partitions of the target`` (the original
partition when replaying to the source topic).  Progress is kept in the consumer group
``<group_id>.dlq-replay``: dead letters are handled in windows, and a window's DLQ offsets are
committed only after every record of it was acknowledged (idempotent producer, acks=all).
Before a window is produced, the lowest offset each of its target partitions can receive is
committed in a second group, ``<replay group>.pending.<dlq topic>``; that group is deleted once
the window is committed.  A run that finds it (the previous run was interrupted between
producing and committing) reads those target partitions from there and skips every dead
letter whose ``amberflo.replay.source`` is already on them (``connector.dlq.resume``).  So an
interrupted replay resumes where it stopped and never republishes a record twice — as long as
one replay of a DLQ topic runs at a time.

Several dead letters of one source record (older versions wrote one per crash) are replayed
once: the later ones are passed over as duplicates.

A dead letter not selected by ``stage``/``since`` is passed over for good by this progress
group (use another ``group`` to replay it later); one failed after ``until`` stops its
partition without being passed, so a later run with a later ``until`` continues from it.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from connector.dlq.inspect import FirstLetters
from connector.dlq.resume import Marks, PendingMarks
from connector.dlq.view import DeadLetterView
from connector.errors import FatalError
from connector.kafka import (
    dlq_producer_config,
    open_reader,
    partitions_of,
    produce_queued,
    scan,
)
from connector.settings import Settings

WINDOW = 500
"""Dead letters republished between two commits of the replay progress."""


@dataclass
class ReplayReport:
    """What a replay did (or, with ``dry_run``, would do)."""

    read: int = 0
    republished: Counter[str] = field(default_factory=Counter)  # by target topic
    skipped: int = 0  # not selected by stage/since: passed over
    already: int = 0  # republished by an interrupted run: not again
    duplicates: int = 0  # a later letter of a record already read in this run: passed over
    held: int = 0  # partitions stopped at a dead letter newer than ``until``
    dry_run: bool = False

    def line(self) -> str:
        n = sum(self.republished.values())
        verb = "would republish" if self.dry_run else "republished"
        targets = ", ".join(f"{t} {c}" for t, c in sorted(self.republished.items()))
        text = f"{verb} {n} of {self.read} dead letters read"
        if targets:
            text += f" ({targets})"
        text += f"; {self.skipped} not selected"
        if self.already:
            text += f"; {self.already} already republished by an interrupted run"
        if self.duplicates:
            text += f"; {self.duplicates} duplicates of records already read"
        if self.held:
            text += f"; {self.held} partition(s) stopped at --until"
        return text


@dataclass(slots=True)
class _Planned:
    letter: DeadLetterView
    target: str
    partition: int


class Replayer:
    """One ``dlq replay`` run; see the module docstring for the contract."""

    def __init__(
        self,
        settings: Settings,
        *,
        to: str | None = None,
        stage: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        dry_run: bool = False,
        group: str | None = None,
        idle_s: float = 2.0,
        progress: Callable[[ReplayReport], None] | None = None,
    ) -> None:
        self.settings = settings
        self.to = to
        self.stage = stage
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.dry_run = dry_run
        self.group = group or f"{settings.kafka.group_id}.dlq-replay"
        self.idle_s = idle_s
        self.progress = progress or (lambda _r: None)
        self.report = ReplayReport(dry_run=dry_run)
        self._firsts = FirstLetters()  # duplicate letters of one record: replayed once
        self._marks = PendingMarks(settings, self.group, idle_s)
        self._consumer = open_reader(settings, self.group)
        self._producer: Producer | None = None
        self._target_parts: dict[str, int] = {}
        self._next: dict[tuple[str, int], int] = {}  # one past our last acked record there

    # -- public ------------------------------------------------------------------------
    def run(self, topics: list[str], on_missing: Callable[[str], None] | None = None) -> None:
        try:
            for topic in topics:
                parts = partitions_of(self._consumer, topic)
                if parts is None:
                    if on_missing is not None:
                        on_missing(topic)
                    continue
                self._replay_topic(topic, parts)
        finally:
            self._consumer.close()
            self._marks.close()
            if self._producer is not None:
                self._producer.flush(10)

    # -- one DLQ topic -----------------------------------------------------------------
    def _replay_topic(self, topic: str, parts: list[int]) -> None:
        committed = self._consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        start = {tp.partition: tp.offset for tp in committed}
        pending_group = f"{self.group}.pending.{topic}"
        pending = self._marks.read(pending_group)
        already = self._marks.republished(topic, pending, start) if pending else set()
        self._consumer.assign(
            [TopicPartition(topic, p, o if o >= 0 else OFFSET_BEGINNING) for p, o in start.items()]
        )
        stopped: set[int] = set()
        window: list[_Planned] = []
        passed: dict[int, int] = {}  # DLQ partition → last offset handled in this window

        def flush() -> None:
            nonlocal pending
            if not self.dry_run:
                pending = self._publish(window, pending_group, pending)
                self._commit(topic, passed)
            start.update({q: o + 1 for q, o in passed.items()})
            # The marks may go once every dead letter they protect is committed past.
            if pending and not self.dry_run and not any(o >= start[q] for q, o in already):
                self._marks.clear(pending_group)
                pending = {}
            window.clear()
            passed.clear()
            self.progress(self.report)

        def all_stopped() -> bool:
            return len(stopped) == len(parts)

        def settled() -> set[tuple[str, int]]:
            return {(topic, p) for p in stopped}

        for msg in scan(self._consumer, self.idle_s, all_stopped, settled):
            letter = DeadLetterView.from_message(msg)
            p = letter.partition
            if p in stopped:
                continue
            self.report.read += 1
            if self.until_ms is not None and letter.failed_or_timestamp_ms > self.until_ms:
                stopped.add(p)
                self.report.held += 1
                self._consumer.pause([TopicPartition(topic, p)])
                continue
            passed[p] = letter.offset
            if (p, letter.offset) in already:
                self.report.already += 1
            elif not self._firsts.first(letter):
                self.report.duplicates += 1
            elif not self._selected(letter):
                self.report.skipped += 1
            else:
                target = self._target(letter)
                window.append(_Planned(letter, target, self._partition_for(letter, target)))
                self.report.republished[target] += 1
            if len(window) >= WINDOW:
                flush()
            elif self.report.read % 100 == 0:
                self.progress(self.report)
        flush()

    def _selected(self, letter: DeadLetterView) -> bool:
        if self.stage is not None and letter.stage != self.stage:
            return False
        return self.since_ms is None or letter.failed_or_timestamp_ms >= self.since_ms

    def _target(self, letter: DeadLetterView) -> str:
        target = self.to or letter.source_topic
        if target is None:
            raise FatalError(
                f"dead letter {letter.coordinates} names no source topic; give --to TOPIC"
            )
        if target not in self._target_parts:
            parts = partitions_of(self._consumer, target)
            if parts is None:
                raise FatalError(f"target topic {target!r} does not exist")
            self._target_parts[target] = len(parts)
        return target

    def _partition_for(self, letter: DeadLetterView, target: str) -> int:
        n = self._target_parts[target]
        if letter.source_partition is not None and letter.source_partition >= 0:
            return letter.source_partition % n
        return zlib.crc32(letter.key or b"") % n

    # -- producing -----------------------------------------------------------------------
    def _publish(self, window: list[_Planned], pending_group: str, pending: Marks) -> Marks:
        """Produce the window and wait for every acknowledgement; returns the pending marks."""
        if not window:
            return pending
        new = {(w.target, w.partition) for w in window} - set(pending)
        if new:
            marks = {tp: self._low_bound(*tp) for tp in sorted(new)}
            self._marks.record(pending_group, marks)
            pending = {**pending, **marks}
        producer = self._get_producer()
        failures: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(f"{msg.topic()}/{msg.partition()}: {err.str()}")
                return
            key = (str(msg.topic()), int(msg.partition() or 0))
            after = int(msg.offset() or 0) + 1
            if after > self._next.get(key, 0):
                self._next[key] = after

        for w in window:
            r = w.letter
            kwargs: dict[str, Any] = {
                "key": r.key,
                "value": r.value,
                "headers": r.replay_headers(),
                "partition": w.partition,
                "on_delivery": delivered,
            }
            if r.timestamp_ms > 0:
                kwargs["timestamp"] = r.timestamp_ms
            try:
                produce_queued(producer, w.target, **kwargs)
            except KafkaException as exc:
                raise FatalError(f"cannot republish {r.coordinates}: {exc}") from exc
        while producer.flush(5.0):
            pass
        if failures:
            raise FatalError(
                f"republishing failed ({failures[0]}); nothing of this window is marked done — "
                "run the replay again: records that did land are recognised and not repeated"
            )
        return pending

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                dlq_producer_config(self.settings, "amberflo-connector-dlq-replay")
            )
        return self._producer

    def _low_bound(self, topic: str, partition: int) -> int:
        """An offset at or below the next one ``topic/partition`` will assign.

        One past our last acknowledged record there (every earlier produce is acknowledged
        when this is asked), else the partition's end offset, which some brokers (Tansu)
        report too low — harmless for a lower bound.
        """
        known = self._next.get((topic, partition))
        if known is not None:
            return known
        try:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
        except KafkaException as exc:
            raise FatalError(f"cannot read the offsets of {topic}/{partition}: {exc}") from exc
        return max(0, int(high))

    # -- progress ------------------------------------------------------------------------
    def _commit(self, topic: str, passed: dict[int, int]) -> None:
        if not passed:
            return
        offsets = [TopicPartition(topic, p, o + 1) for p, o in sorted(passed.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise FatalError(
                f"cannot commit the replay progress of group {self.group!r}: {exc}; records "
                "republished since the last commit are recognised by the next run"
            ) from exc
