"""A dead letter as read back from a DLQ topic: its error headers parsed (either style that
``connector.dlq.publish`` writes), and what ``dlq replay`` republishes it with."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Message

from connector.dlq.publish import (
    AMBERFLO_ERROR_HEADERS,
    AMBERFLO_PREFIX,
    CONNECT_PREFIX,
)
from connector.formats.ids import ORIGIN_HEADER
from connector.records import Headers, last_header
from connector.timefmt import ms_to_iso, parse_time

REPLAY_COUNT_HEADER = "amberflo.replay.count"
REPLAY_SOURCE_HEADER = "amberflo.replay.source"
STAGES = ("decode", "transform", "sink")
_CONNECT_STAGE = {
    "KEY_CONVERTER": "decode",
    "VALUE_CONVERTER": "decode",
    "HEADER_CONVERTER": "decode",
    "TRANSFORMATION": "transform",
}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


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
