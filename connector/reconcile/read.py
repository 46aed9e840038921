"""What Kafka holds, read for reconciliation: never joining the connector's group, never
committing (partitions are ``assign()``-ed to a throwaway group; the connector group's
committed offsets are only looked up).

Order matters while the connector runs: the committed offsets are snapshot first, then the
dead-letter topics are read, then the source topics (Amberflo is asked last, by the caller).
A record committed before the snapshot had its events delivered or its dead letter
acknowledged before that, so both are visible to the later reads; anything that happens
after the snapshot concerns records past it, which count as in flight.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    TopicPartition,
)

from connector.dlq.inspect import read_dead_letters
from connector.errors import ConfigError, FatalError, RecordError
from connector.formats import Mappers
from connector.formats.rules import Filtered
from connector.kafka import open_reader, partitions_of, scan
from connector.pipeline.subscription import Subscription
from connector.reconcile.filtered import Unfiltered
from connector.reconcile.model import Tally, iso
from connector.records import CustomerUpdate, MeterEvent, SourceRecord
from connector.settings import LibrdkafkaValue, Settings

Coordinates = tuple[str, int, int]
Evaluate = Callable[[SourceRecord], list[MeterEvent] | CustomerUpdate | Filtered]
"""A mapper that tells a filtered record apart (``connector.formats.evaluate``)."""
PROGRESS_EVERY = 5000
"""Records between two progress callbacks."""
FAR_FUTURE_MS = 32_503_680_000_000  # year 3000: no record is that late
READER: dict[str, LibrdkafkaValue] = {
    "client.id": "amberflo-connector-reconcile",
    # As the connector's own consumer (pipeline.source): librdkafka's defaults (500 ms fetch
    # wait, 1000 ms backoff once the prefetch queue is full) starve a reader slower than
    # the fetcher.
    "fetch.wait.max.ms": 100,
    "fetch.queue.backoff.ms": 20,
}
UNACCOUNTED_KEPT = 50
"""Unaccounted records listed in the report (all are counted)."""


@dataclass
class PartitionRead:
    """How one source partition was read."""

    topic: str
    partition: int
    committed: int | None
    """The connector group's committed offset (None: it committed nothing here)."""
    start: int
    """Where reading began: an offset, ``OFFSET_BEGINNING`` or ``OFFSET_END``."""
    how: str
    """timestamp | beginning (the broker ignores timestamp lookups) | end (nothing that late)."""
    low: int = 0
    """The log start offset (earlier records are gone: retention)."""
    first_offset: int | None = None
    first_ts: int | None = None
    last_offset: int | None = None
    records: int = 0
    in_flight: int = 0

    def retention_cut(self, since_ms: int) -> bool:
        """Whether records from ``since_ms`` on may be gone: reading began at the log start,
        which retention has moved, and the first record left is later than ``since_ms``."""
        return (
            self.first_offset is not None
            and self.first_ts is not None
            and self.low > 0
            and self.first_offset <= self.low
            and self.first_ts > since_ms
        )

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "start": self.start if self.start >= 0 else None,
            "start_by": self.how,
            "log_start": self.low,
            "first_offset": self.first_offset,
            "first_timestamp": iso(self.first_ts) if self.first_ts is not None else None,
            "last_offset": self.last_offset,
            "records": self.records,
            "in_flight": self.in_flight,
        }


@dataclass
class RecordCounts:
    """Records read, by what became of them.  Apart from ``read``, a record counts when its
    Kafka timestamp is inside the window (a record that fails mapping has no event time)."""

    read: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    """Records with a dead letter, by the letter's stage."""
    filtered: int = 0
    """Records the mapping turns into no event (filtered or skipped): never sent.  The events
    a filter dropped are kept per cell (``Tally`` kind ``filtered``)."""
    failing_in_flight: int = 0
    """Records that fail mapping, past the committed offset, without a dead letter yet."""
    unaccounted: int = 0
    """Records that fail mapping, below the committed offset, without a dead letter."""
    unaccounted_examples: list[str] = field(default_factory=list)
    letters_without_source: int = 0
    reading_s: float = 0.0
    """From the first record read to the last (the idle wait at the end left out)."""


def resolve_topics(consumer: Consumer, settings: Settings, requested: list[str]) -> list[str]:
    """The topics ``run`` would read (``requested`` instead of the configured ones when
    given): ``^regex`` entries resolved against the cluster exactly as the connector does
    (``pipeline.subscription``: never a dead-letter or internal topic)."""
    if requested:
        kafka = settings.kafka.model_copy(update={"topics": requested})
        settings = settings.model_copy(update={"kafka": kafka})
    subscription = Subscription(settings)
    if not subscription.patterns:
        return subscription.literal
    try:
        existing = list(consumer.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise FatalError(
            f"cannot list the topics of {settings.kafka.bootstrap_servers}: {exc}"
        ) from exc
    return subscription.resolve(existing)


def committed_offsets(
    settings: Settings, tps: list[tuple[str, int]]
) -> dict[tuple[str, int], int | None]:
    """The connector group's committed offset of each partition, looked up without joining."""
    consumer = open_reader(settings, settings.kafka.group_id)
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=15)
    except KafkaException as exc:
        raise FatalError(
            f"cannot read the committed offsets of group {settings.kafka.group_id!r} from "
            f"{settings.kafka.bootstrap_servers}: {exc}"
        ) from exc
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}


def start_offsets(
    consumer: Consumer, topic: str, parts: list[int], since_ms: int
) -> dict[int, tuple[int, str]]:
    """Per partition: the first offset whose timestamp is at or after ``since_ms`` and how it
    was found.  A broker that answers a lookup beyond every record with a real offset
    ignores timestamps (Tansu does): then every partition is read from the beginning."""

    def lookup(ts: int) -> list[TopicPartition]:
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p, ts) for p in parts], timeout=15
            )
        except KafkaException as exc:
            raise FatalError(f"cannot look up offsets by time in {topic!r}: {exc}") from exc
        return found

    if any(tp.offset >= 0 for tp in lookup(FAR_FUTURE_MS)):
        return {p: (OFFSET_BEGINNING, "beginning") for p in parts}
    out: dict[int, tuple[int, str]] = {}
    for tp in lookup(since_ms):
        out[tp.partition] = (tp.offset, "timestamp") if tp.offset >= 0 else (OFFSET_END, "end")
    return out


def dead_letter_coordinates(
    settings: Settings, topics: list[str], idle_s: float, counts: RecordCounts
) -> dict[Coordinates, str]:
    """Source coordinates → stage of every dead letter of ``topics``' DLQ topics.  Keyed by
    coordinates, so several letters of one record (older versions could write two) count
    once."""
    dlq_topics = sorted({settings.dlq_topic_for(t) for t in topics})
    out: dict[Coordinates, str] = {}
    for letter in read_dead_letters(settings, dlq_topics, idle_s):
        if (
            letter.source_topic is None
            or letter.source_partition is None
            or letter.source_offset is None
        ):
            counts.letters_without_source += 1
            continue
        key = (letter.source_topic, letter.source_partition, letter.source_offset)
        out[key] = letter.stage or "unknown"
    return out


def plan(
    settings: Settings, requested: list[str], since_ms: int
) -> tuple[list[str], list[PartitionRead]]:
    """The topics to read and, per partition, its committed offset and where to start."""
    consumer = open_reader(settings, f"amberflo-connector-reconcile-{time.time_ns()}")
    try:
        topics = resolve_topics(consumer, settings, requested)
        layout: dict[str, list[int]] = {}
        for topic in topics:
            parts = partitions_of(consumer, topic)
            if parts is None:
                raise ConfigError(
                    f"topic {topic!r} does not exist on {settings.kafka.bootstrap_servers}"
                )
            layout[topic] = parts
        committed = committed_offsets(
            settings, [(t, p) for t, parts in layout.items() for p in parts]
        )
        reads: list[PartitionRead] = []
        for topic, parts in layout.items():
            for p, (start, how) in sorted(start_offsets(consumer, topic, parts, since_ms).items()):
                try:
                    low, _high = consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=15
                    )
                except KafkaException as exc:
                    raise FatalError(f"cannot read the offsets of {topic}[{p}]: {exc}") from exc
                reads.append(PartitionRead(topic, p, committed.get((topic, p)), start, how, low))
    finally:
        consumer.close()
    return topics, reads


def read_source(
    settings: Settings,
    reads: list[PartitionRead],
    letters: dict[Coordinates, str],
    tally: Tally,
    counts: RecordCounts,
    idle_s: float,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Every record of ``reads`` from its start to the end, through the same mapping as
    ``run``, into ``tally`` and ``counts``; a record a filter drops adds the events it would
    have become to the tally as ``filtered`` (``reconcile.filtered``)."""
    lo, hi = tally.window.start_ms, tally.window.end_ms
    mappers = Mappers(settings)
    unfiltered = Unfiltered(settings)
    by_tp = {(r.topic, r.partition): r for r in reads}
    consumer = open_reader(settings, f"amberflo-connector-reconcile-{time.time_ns()}", READER)
    first_at = last_at = 0.0
    # As in the worker (pipeline.interpreter.tune_interpreter): the loop allocates several
    # containers per record while the tally's live set grows, and with the default thresholds
    # the collector re-scans that set over and over (measured: 67-97k → 104-105k records/s).
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    try:
        consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in reads])
        key: tuple[str, int] | None = None
        info: PartitionRead | None = None
        mapper: Evaluate | None = None
        committed = -1
        filters = False
        for message in scan(consumer, idle_s, lambda: False):
            last_at = time.monotonic()
            if not first_at:
                first_at = last_at
            record = SourceRecord.of(message)
            if key != (record.topic, record.partition) or info is None or mapper is None:
                key = (record.topic, record.partition)
                info = by_tp[key]
                found = mappers.for_topic(record.topic)
                mapper = getattr(found, "evaluate", found)
                entry = mappers.mapping_for(record.topic)
                filters = entry is not None and bool(entry[1].filters)  # not a Segment skip
                committed = info.committed if info.committed is not None else -1
            offset = record.offset
            if info.first_offset is None:
                info.first_offset, info.first_ts = offset, record.timestamp_ms
            info.last_offset = offset
            info.records += 1
            counts.read += 1
            past = offset >= committed
            if past:
                info.in_flight += 1
            stage = letters.get((record.topic, record.partition, offset))
            in_window = lo <= record.timestamp_ms < hi
            try:
                events = mapper(record)
            except RecordError as exc:
                if stage is not None:
                    counts.dead_lettered[stage] += in_window
                elif past:
                    counts.failing_in_flight += in_window
                elif in_window:
                    counts.unaccounted += 1
                    if len(counts.unaccounted_examples) < UNACCOUNTED_KEPT:
                        counts.unaccounted_examples.append(
                            f"{record.topic}[{record.partition}]@{offset} ({exc.stage}: {exc})"
                        )
                continue
            if isinstance(events, CustomerUpdate):  # a customer's details: no usage in it
                continue
            if isinstance(events, Filtered):
                counts.filtered += in_window
                if filters:
                    tally.add(unfiltered(record), "filtered")
            elif not events:
                counts.filtered += in_window
            elif stage is not None:
                counts.dead_lettered[stage] += in_window
                tally.add(events, "dead-lettered")
            else:
                tally.add(events, "in flight" if past else "committed")
            if progress is not None and counts.read % PROGRESS_EVERY == 0:
                progress(counts.read)
    finally:
        consumer.close()
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    counts.reading_s = last_at - first_at
    if progress is not None:
        progress(counts.read)
