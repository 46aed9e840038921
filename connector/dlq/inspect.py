"""Reading and inspecting dead-letter topics (``amberflo-connector dlq inspect``).

Reading never joins the connector's consumer group and never commits for it: partitions are
``assign()``-ed directly.  The end of a topic is where a poll stays empty for ``idle_s``
seconds — not the broker's end offsets, which some brokers (Tansu) report wrongly.
Replaying is in ``connector.dlq.replay``.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from rich.table import Table

from connector.dlq.publish import (
    AMBERFLO_ERROR_HEADERS,
    AMBERFLO_PREFIX,
    CONNECT_PREFIX,
)
from connector.errors import ConfigError, FatalError
from connector.formats.ids import ORIGIN_HEADER
from connector.kafka import client_config
from connector.records import Headers, last_header
from connector.settings import LibrdkafkaValue, Settings
from connector.timefmt import ms_to_iso

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
        return last_header(self.headers, name)

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

    @property
    def incarnation(self) -> str | None:
        """The topic id its ``amberflo.origin`` gives for its own source record, if any."""
        given = self.header(ORIGIN_HEADER)
        if not given:
            return None
        named, _, rest = given.decode("utf-8", "replace").partition("/")
        name, at, topic_id = named.partition("@")
        if not at or name != self.source_topic:
            return None
        if rest != f"{self.source_partition}/{self.source_offset}":
            return None  # a replayed record's first coordinates, not its own
        return topic_id

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
            "failed_at": None if self.failed_at_ms is None else ms_to_iso(self.failed_at_ms),
        }


def default_topics(settings: Settings) -> list[str]:
    """The DLQ topic of each configured source topic (patterns have none to derive)."""
    if settings.dlq.topic:
        return [settings.dlq.topic]
    out: list[str] = []
    for t in settings.kafka.topics:
        if t.startswith("^"):
            continue
        name = settings.dlq_topic_for(t)
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(
            "no dead-letter topic to read: give --topic, or set CONNECTOR_DLQ__TOPIC or "
            "CONNECTOR_KAFKA__TOPICS (patterns have no DLQ topic to derive)"
        )
    return out


def open_reader(
    settings: Settings, group_id: str, extra: Mapping[str, LibrdkafkaValue] | None = None
) -> Consumer:
    """A consumer that never commits (use it with ``assign()``); ``extra`` adds or overrides
    librdkafka properties."""
    return Consumer(
        {
            **client_config(settings),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "client.id": "amberflo-connector-dlq-tool",
            "enable.partition.eof": True,
            **(extra or {}),
        }
    )


def partitions_of(consumer: Consumer, topic: str) -> list[int] | None:
    """The partition ids of ``topic``, or None when it does not exist."""
    try:
        meta = consumer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        raise FatalError(f"cannot read topic metadata of {topic!r}: {exc}") from exc
    t = meta.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        return None
    return sorted(t.partitions)


def scan(
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
                raise FatalError(f"reading {msg.topic()} failed: {err.str()}")
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
    consumer = open_reader(settings, f"amberflo-connector-dlq-inspect-{time.time_ns()}")
    try:
        for topic in topics:
            parts = partitions_of(consumer, topic)
            if parts is None:
                if on_missing is not None:
                    on_missing(topic)
                continue
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            for msg in scan(consumer, idle_s, lambda: False):
                yield DeadLetterView.from_message(msg)
            consumer.unassign()
    finally:
        consumer.close()


class FirstLetters:
    """Tells the first dead letter of a source record from later ones.

    Before 0.2 a record re-read after a crash was dead-lettered again, so a DLQ can hold
    several letters of one record (same source topic, partition and offset, and topic id when
    the letter names it).  ``dlq inspect`` and ``dlq replay`` treat them as one.  Keeps one
    integer per dead letter read (a few dozen bytes each).  A letter without source
    coordinates is always a first one.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, str | None], set[int]] = {}
        self.duplicates = 0

    def first(self, letter: DeadLetterView) -> bool:
        topic, partition, offset = (
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
        )
        if topic is None or partition is None or offset is None:
            return True
        seen = self._seen.setdefault((topic, partition, letter.incarnation), set())
        if offset in seen:
            self.duplicates += 1
            return False
        seen.add(offset)
        return True


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
            ms_to_iso(d.failed_or_timestamp_ms, "seconds"),
            d.preview(),
        )
    return table
