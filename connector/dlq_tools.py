"""Reading, inspecting and replaying dead-letter topics (``amberflo-connector dlq …``).

Reading never joins the connector's consumer group and never commits for it: partitions are
``assign()``-ed directly.  The end of a topic is where a poll stays empty for ``idle_s``
seconds — not the broker's end offsets, which some brokers (Tansu) report wrongly.

Replay contract
---------------
``replay`` republishes each selected dead letter to its source topic (or ``to``) with the
original key, value, timestamp and headers minus the error headers, plus:

* ``amberflo.origin`` — ``topic/partition/offset`` of the record's *first* publication (kept
  when the dead letter already has one), which ``transform`` prefers over the record's own
  coordinates, so a replayed record derives exactly the uniqueIds it would have had;
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
letter whose ``amberflo.replay.source`` is already on them.  So an interrupted replay resumes
where it stopped and never republishes a record twice — as long as one replay of a DLQ topic
runs at a time.

A dead letter not selected by ``stage``/``since`` is passed over for good by this progress
group (use another ``group`` to replay it later); one failed after ``until`` stops its
partition without being passed, so a later run with a later ``until`` continues from it.
"""

from __future__ import annotations

import base64
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from rich.table import Table

from connector.dlq import (
    AMBERFLO_ERROR_HEADERS,
    AMBERFLO_PREFIX,
    CONNECT_PREFIX,
    DLQ_MESSAGE_MAX_BYTES,
    client_config,
)
from connector.errors import FatalError
from connector.records import Headers
from connector.settings import Settings
from connector.transform import ORIGIN_HEADER

REPLAY_COUNT_HEADER = "amberflo.replay.count"
REPLAY_SOURCE_HEADER = "amberflo.replay.source"
STAGES = ("decode", "transform", "sink")
_CONNECT_STAGE = {
    "KEY_CONVERTER": "decode",
    "VALUE_CONVERTER": "decode",
    "HEADER_CONVERTER": "decode",
    "TRANSFORMATION": "transform",
}
ERROR_PREVIEW_CHARS = 160
"""Error text shown per row of the ``inspect`` table (``--json`` has all of it)."""
IDLE_CAP_FACTOR = 5
"""Longest wait for a partition that never reports its end, in units of ``idle_s``."""
WINDOW = 500
"""Dead letters republished between two commits of the replay progress."""


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_time(text: str) -> int:
    """Epoch milliseconds of ``text``: an integer (epoch ms) or ISO-8601 (naive means UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _iso(ms: int | None, timespec: str = "milliseconds") -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec=timespec)


def _bytes_json(value: bytes | None) -> tuple[str | None, bool]:
    """(text, is_base64): UTF-8 text when the bytes are valid UTF-8, else base64."""
    if value is None:
        return None, False
    try:
        return value.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), True


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter as read back, with its error headers parsed (either header style)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    style: str  # amberflo | connect | unknown
    stage: str | None = None
    error_class: str | None = None
    message: str | None = None
    http_status: int | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    failed_at_ms: int | None = None

    @classmethod
    def parse(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
    ) -> DeadLetterView:
        last: dict[str, bytes | None] = {}
        for k, v in headers:
            last[k] = v
        base = (topic, partition, offset, timestamp_ms, key, value, headers)
        if AMBERFLO_PREFIX + "error.stage" in last:
            p = AMBERFLO_PREFIX
            failed = _text(last.get(p + "failed_at"))
            try:
                failed_ms = parse_time(failed) if failed else None
            except ValueError:
                failed_ms = None
            return cls(
                *base,
                style="amberflo",
                stage=_text(last.get(p + "error.stage")),
                error_class=_text(last.get(p + "error.class")),
                message=_text(last.get(p + "error.message")),
                http_status=_int(last.get(p + "error.http_status")),
                source_topic=_text(last.get(p + "source.topic")),
                source_partition=_int(last.get(p + "source.partition")),
                source_offset=_int(last.get(p + "source.offset")),
                failed_at_ms=failed_ms,
            )
        if CONNECT_PREFIX + "topic" in last:
            p = CONNECT_PREFIX
            class_name = _text(last.get(p + "class.name")) or ""
            stage = class_name.removeprefix("connector.")
            if stage not in STAGES:
                stage = _CONNECT_STAGE.get(_text(last.get(p + "stage")) or "", "sink")
            return cls(
                *base,
                style="connect",
                stage=stage,
                error_class=_text(last.get(p + "exception.class.name")),
                message=_text(last.get(p + "exception.message")),
                source_topic=_text(last.get(p + "topic")),
                source_partition=_int(last.get(p + "partition")),
                source_offset=_int(last.get(p + "offset")),
            )
        return cls(*base, style="unknown")

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetterView:
        raw = cast("list[tuple[str, bytes | None]] | None", msg.headers())
        headers: Headers = tuple(raw or ())
        return cls.parse(
            str(msg.topic()),
            int(msg.partition() or 0),
            int(msg.offset() or 0),
            msg.timestamp()[1],
            msg.key(),
            msg.value(),
            headers,
        )

    def header(self, name: str) -> bytes | None:
        found: bytes | None = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found

    @property
    def failed_or_timestamp_ms(self) -> int:
        """When it failed (``amberflo.failed_at``), else the record's own timestamp."""
        return self.failed_at_ms if self.failed_at_ms is not None else self.timestamp_ms

    @property
    def origin(self) -> str | None:
        """``topic/partition/offset`` of the record's first publication, when known."""
        given = self.header(ORIGIN_HEADER)
        if given:
            return given.decode("utf-8", "replace")
        if self.source_topic is None or self.source_partition is None:
            return None
        if self.source_offset is None:
            return None
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"

    @property
    def coordinates(self) -> str:
        """``dlq-topic/partition/offset`` of this dead letter."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def replay_headers(self) -> list[tuple[str, bytes | None]]:
        """The original headers without error headers, plus origin, replay count and source."""
        drop = {ORIGIN_HEADER, REPLAY_COUNT_HEADER, REPLAY_SOURCE_HEADER}
        out = [
            (k, v)
            for k, v in self.headers
            if k not in AMBERFLO_ERROR_HEADERS
            and k not in drop
            and not k.startswith(CONNECT_PREFIX)
        ]
        origin = self.origin
        if origin is not None:
            out.append((ORIGIN_HEADER, origin.encode()))
        count = _int(self.header(REPLAY_COUNT_HEADER)) or 0
        out.append((REPLAY_COUNT_HEADER, str(count + 1).encode()))
        out.append((REPLAY_SOURCE_HEADER, self.coordinates.encode()))
        return out

    def preview(self, width: int = 60) -> str:
        text, b64 = _bytes_json(self.value)
        if text is None:
            return "(null)"
        text = ("base64:" if b64 else "") + " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    def to_json(self) -> dict[str, Any]:
        """The full record and headers (bytes as UTF-8 text, or base64 with a flag)."""
        key, key_b64 = _bytes_json(self.key)
        value, value_b64 = _bytes_json(self.value)
        headers = []
        for k, v in self.headers:
            text, b64 = _bytes_json(v)
            headers.append({"key": k, "value": text, "base64": b64})
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp_ms,
            "key": key,
            "key_base64": key_b64,
            "value": value,
            "value_base64": value_b64,
            "headers": headers,
            "header_style": self.style,
            "stage": self.stage,
            "error_class": self.error_class,
            "error_message": self.message,
            "http_status": self.http_status,
            "source": {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self.source_offset,
            },
            "origin": self.origin,
            "failed_at": _iso(self.failed_at_ms),
        }


def default_topics(settings: Settings) -> list[str]:
    """The DLQ topic of each configured source topic (patterns have none to derive)."""
    out: list[str] = []
    for t in settings.kafka.topics:
        if t.startswith("^"):
            continue
        name = settings.dlq_topic_for(t)
        if name not in out:
            out.append(name)
    if not out:
        raise FatalError(
            "no dead-letter topic to read: CONNECTOR_KAFKA__TOPICS holds only patterns; give "
            "--topic or CONNECTOR_DLQ__TOPIC"
        )
    return out


def _reader(settings: Settings, group_id: str) -> Consumer:
    return Consumer(
        {
            **client_config(settings),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "client.id": "amberflo-connector-dlq-tool",
            "enable.partition.eof": True,
        }
    )


def _partitions(consumer: Consumer, topic: str) -> list[int] | None:
    """The partition ids of ``topic``, or None when it does not exist."""
    try:
        meta = consumer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        raise FatalError(f"cannot read topic metadata of {topic!r}: {exc}") from exc
    t = meta.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        return None
    return sorted(t.partitions)


def _read(
    consumer: Consumer,
    idle_s: float,
    stop: Callable[[], bool],
    settled: Callable[[], set[tuple[str, int]]] = set,
) -> Iterator[Message]:
    """Messages of the current assignment until the end, or until ``stop()``.

    The end is a poll staying empty for ``idle_s`` once every assigned partition (except those
    in ``settled()``, e.g. paused ones) has reported end-of-partition at least once, so a slow
    first fetch is not mistaken for an empty topic.  End-of-partition alone is not trusted (it
    follows the broker's end offset, which Tansu reports too low); without it the wait is
    capped at ``IDLE_CAP_FACTOR × idle_s``.
    """
    last = time.monotonic()
    at_end: set[tuple[str, int]] = set()
    while not stop():
        batch = consumer.consume(500, min(idle_s, 0.2))
        got = False
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add((str(msg.topic()), int(msg.partition() or 0)))
                    continue
                raise FatalError(f"reading the dead-letter topic failed: {err.str()}")
            got = True
            yield msg
        now = time.monotonic()
        if got:
            last = now
            continue
        idle = now - last
        if idle < idle_s:
            continue
        waiting = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        if not (waiting - at_end - settled()) or idle >= IDLE_CAP_FACTOR * idle_s:
            return


def read_dead_letters(
    settings: Settings,
    topics: list[str],
    idle_s: float = 2.0,
    on_missing: Callable[[str], None] | None = None,
) -> Iterator[DeadLetterView]:
    """Every dead letter of ``topics`` from the beginning, without committing anything.

    Uses a throwaway group id and ``assign()``, so the connector's group is never joined.
    """
    consumer = _reader(settings, f"amberflo-connector-dlq-inspect-{time.time_ns()}")
    try:
        for topic in topics:
            parts = _partitions(consumer, topic)
            if parts is None:
                if on_missing is not None:
                    on_missing(topic)
                continue
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            for msg in _read(consumer, idle_s, lambda: False):
                yield DeadLetterView.from_message(msg)
            consumer.unassign()
    finally:
        consumer.close()


@dataclass
class Summary:
    """Dead letters counted by stage and error class."""

    by_stage: Counter[str] = field(default_factory=Counter)
    by_class: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, letter: DeadLetterView) -> None:
        stage = letter.stage or "unknown"
        self.by_stage[stage] += 1
        self.by_class.setdefault(stage, Counter())[letter.error_class or "unknown"] += 1

    @property
    def total(self) -> int:
        return sum(self.by_stage.values())

    def line(self) -> str:
        """``3 dead letters — decode 1 (DecodeError 1); sink 2 (EventRejected 2)``."""
        noun = "dead letter" if self.total == 1 else "dead letters"
        if not self.total:
            return f"0 {noun}"
        order = [s for s in STAGES if s in self.by_stage] + sorted(
            s for s in self.by_stage if s not in STAGES
        )
        parts = []
        for stage in order:
            classes = ", ".join(f"{name} {n}" for name, n in sorted(self.by_class[stage].items()))
            parts.append(f"{stage} {self.by_stage[stage]} ({classes})")
        return f"{self.total} {noun} — " + "; ".join(parts)


def letters_table(letters: list[DeadLetterView], title: str | None = None) -> Table:
    """The ``dlq inspect`` table: source coordinates, stage, HTTP status, error, time, value."""
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("source", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("HTTP", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=30)
    table.add_column("failed at", no_wrap=True)
    table.add_column("value", overflow="ellipsis", no_wrap=True, max_width=40)
    for d in letters:
        where = (
            f"{d.source_topic}/{d.source_partition}@{d.source_offset}"
            if d.source_topic is not None
            else f"(dlq) {d.coordinates}"
        )
        error = f"{d.error_class}: {d.message}" if d.error_class else (d.message or "")
        if len(error) > ERROR_PREVIEW_CHARS:
            error = error[: ERROR_PREVIEW_CHARS - 1] + "…"
        table.add_row(
            where,
            d.stage or "?",
            str(d.http_status) if d.http_status is not None else "",
            error,
            _iso(d.failed_or_timestamp_ms, "seconds") or "",
            d.preview(),
        )
    return table


# -- replay ---------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    """What a replay did (or, with ``dry_run``, would do)."""

    read: int = 0
    republished: Counter[str] = field(default_factory=Counter)  # by target topic
    skipped: int = 0  # not selected by stage/since: passed over
    already: int = 0  # republished by an interrupted run: not again
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
        self._conf = client_config(settings)
        self._admin = AdminClient(dict(self._conf))
        self._consumer = _reader(settings, self.group)
        self._producer: Producer | None = None
        self._target_parts: dict[str, int] = {}
        self._next: dict[tuple[str, int], int] = {}  # one past our last acked record there
        self._marks: dict[str, Consumer] = {}  # committers of the pending groups

    # -- public ------------------------------------------------------------------------
    def run(self, topics: list[str], on_missing: Callable[[str], None] | None = None) -> None:
        try:
            for topic in topics:
                parts = _partitions(self._consumer, topic)
                if parts is None:
                    if on_missing is not None:
                        on_missing(topic)
                    continue
                self._replay_topic(topic, parts)
        finally:
            self._consumer.close()
            for c in self._marks.values():
                c.close()
            if self._producer is not None:
                self._producer.flush(10)

    # -- one DLQ topic -----------------------------------------------------------------
    def _replay_topic(self, topic: str, parts: list[int]) -> None:
        committed = self._consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        start = {tp.partition: tp.offset for tp in committed}
        pending_group = f"{self.group}.pending.{topic}"
        pending = self._pending(pending_group)
        already = self._find_republished(topic, pending, start) if pending else set()
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
                self._delete_group(pending_group)
                pending = {}
            window.clear()
            passed.clear()
            self.progress(self.report)

        def all_stopped() -> bool:
            return len(stopped) == len(parts)

        def settled() -> set[tuple[str, int]]:
            return {(topic, p) for p in stopped}

        for msg in _read(self._consumer, self.idle_s, all_stopped, settled):
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
            parts = _partitions(self._consumer, target)
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
    def _publish(
        self, window: list[_Planned], pending_group: str, pending: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        """Produce the window and wait for every acknowledgement; returns the pending marks."""
        if not window:
            return pending
        new = {(w.target, w.partition) for w in window} - set(pending)
        if new:
            marks = {tp: self._low_bound(*tp) for tp in sorted(new)}
            self._commit_group(pending_group, marks)
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
            while True:
                try:
                    producer.produce(w.target, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
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
                {
                    **self._conf,
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "message.max.bytes": DLQ_MESSAGE_MAX_BYTES,
                    "client.id": "amberflo-connector-dlq-replay",
                    **self.settings.kafka.producer,
                }
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

    def _commit_group(self, group: str, marks: dict[tuple[str, int], int]) -> None:
        c = self._marks.get(group)
        if c is None:
            c = self._marks[group] = Consumer(
                {**self._conf, "group.id": group, "enable.auto.commit": False}
            )
        try:
            c.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in marks.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise FatalError(f"cannot record the replay window in {group!r}: {exc}") from exc

    def _pending(self, group: str) -> dict[tuple[str, int], int]:
        """The marks an interrupted run left: target partition → lowest offset it produced at."""
        futures = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        try:
            result = futures[group].result(10)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return {}
            raise FatalError(f"cannot read the replay marks of {group!r}: {exc}") from exc
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or []
            if tp.offset >= 0
        }

    def _delete_group(self, group: str) -> None:
        for future in self._admin.delete_consumer_groups([group], request_timeout=10).values():
            try:
                future.result(10)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                raise FatalError(f"cannot clear the replay marks {group!r}: {exc}") from exc

    def _find_republished(
        self, topic: str, pending: dict[tuple[str, int], int], start: dict[int, int]
    ) -> set[tuple[int, int]]:
        """(partition, offset) of ``topic``'s dead letters already on their targets."""
        found: set[tuple[int, int]] = set()
        reader = _reader(self.settings, f"{self.group}.scan-{time.time_ns()}")
        try:
            for source in self._markers(reader, pending):
                head, _, off = source.rpartition("/")
                name, _, part = head.rpartition("/")
                if name == topic and part.isdigit() and off.isdigit():
                    p, o = int(part), int(off)
                    if o >= start.get(p, 0):
                        found.add((p, o))
        finally:
            reader.close()
        return found

    def _markers(self, reader: Consumer, marks: dict[tuple[str, int], int]) -> Iterator[str]:
        """``amberflo.replay.source`` values on each marked partition from its offset on.

        Reads every partition up to its end offset as of now and then ``idle_s`` longer (some
        brokers report an end offset below the last record); or until a poll stays empty for
        ``idle_s``.
        """
        ends: dict[tuple[str, int], int] = {}
        for (t, p), low in marks.items():
            _low, high = reader.get_watermark_offsets(
                TopicPartition(t, p), timeout=10, cached=False
            )
            if high > low:
                ends[(t, p)] = high
        reader.assign([TopicPartition(t, p, low) for (t, p), low in marks.items()])
        reached: list[float] = []

        def done() -> bool:
            if not reached and not ends:
                reached.append(time.monotonic())
            return bool(reached) and time.monotonic() - reached[0] >= self.idle_s

        for msg in _read(reader, self.idle_s, done):
            key = (str(msg.topic()), int(msg.partition() or 0))
            if key in ends and (msg.offset() or 0) + 1 >= ends[key]:
                del ends[key]
            raw = cast("list[tuple[str, bytes | None]] | None", msg.headers())
            for k, v in raw or ():
                if k == REPLAY_SOURCE_HEADER and v:
                    yield v.decode("utf-8", "replace")
        reader.unassign()
