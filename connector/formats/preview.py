"""What the configured mappings make of records: for ``mappings preview`` (records read from
Kafka) and ``mappings test`` (records written in a file of cases, for a user's own CI).

Both run the very mapper the worker runs (``Mappers.for_topic``), so what they print is what
``run`` would send or dead-letter.  Reading never joins the connector's group and never
commits (``dlq.inspect``'s reader: a throwaway group id and ``assign()``).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from connector.errors import ConfigError, FatalError, RecordError
from connector.formats import Mappers, evaluate
from connector.formats.rules import Filtered
from connector.records import CustomerUpdate, Headers, SourceRecord
from connector.settings import Settings

DEFAULT_TIMESTAMP_MS = 1_767_225_600_000
"""The Kafka timestamp of a test case's record that gives none (2026-01-01T00:00:00Z)."""


@dataclass(frozen=True)
class Outcome:
    """One record's fate: its events' payloads, the filter that drops it, or its DLQ error."""

    record: SourceRecord
    events: list[dict[str, Any]] = field(default_factory=list)
    customer: dict[str, Any] | None = None
    filtered: str | None = None
    stage: str | None = None
    error_class: str | None = None
    message: str | None = None

    @property
    def source(self) -> str:
        r = self.record
        return f"{r.topic}/{r.partition}@{r.offset}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
        }
        if self.stage is not None:
            out["error"] = {"stage": self.stage, "class": self.error_class, "message": self.message}
        elif self.filtered is not None:
            out["filtered"] = self.filtered
        elif self.customer is not None:
            out["customer"] = self.customer
        else:
            out["events"] = self.events
        return out


def outcome(mappers: Mappers, record: SourceRecord) -> Outcome:
    try:
        result = evaluate(mappers.for_topic(record.topic), record)
    except RecordError as exc:
        return Outcome(record, stage=exc.stage, error_class=type(exc).__name__, message=str(exc))
    if isinstance(result, Filtered):
        return Outcome(record, filtered=result.rule)
    if isinstance(result, CustomerUpdate):
        return Outcome(record, customer=result.payload())
    return Outcome(record, events=[e.payload() for e in result])


def preview_topics(settings: Settings, given: str | None, available: list[str]) -> list[str]:
    """``--topic``, else the configured topics, patterns resolved against ``available``
    (dead-letter topics left out)."""
    if given:
        return [given]
    out: list[str] = []
    for t in settings.kafka.topics:
        if t.startswith("^"):
            out += sorted(a for a in available if re.search(t, a) and not a.endswith(".dlq"))
        elif t not in out:
            out.append(t)
    return out


def read_records(
    settings: Settings, topics: list[str], limit: int, idle_s: float
) -> Iterator[SourceRecord | str]:
    """Up to ``limit`` records of each topic from its beginning; a topic that does not
    exist yields its name (to be reported) instead."""
    from connector.kafka import open_reader, partitions_of, scan

    consumer = open_reader(settings, f"amberflo-connector-mappings-preview-{time.time_ns()}")
    try:
        for topic in topics:
            parts = partitions_of(consumer, topic)
            if parts is None:
                yield topic
                continue
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            for n, msg in enumerate(scan(consumer, idle_s, lambda: False), 1):
                yield SourceRecord.of(msg)
                if n >= limit:
                    break
            consumer.unassign()
    finally:
        consumer.close()


# -- mappings test ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    record: SourceRecord
    expect: dict[str, Any]


def _bytes(spec: dict[str, Any], key: str, where: str) -> bytes | None:
    """``key`` (JSON value: encoded), ``key_text`` (UTF-8) or ``key_base64`` of ``spec``."""
    if f"{key}_text" in spec:
        return str(spec[f"{key}_text"]).encode()
    if f"{key}_base64" in spec:
        try:
            return base64.b64decode(str(spec[f"{key}_base64"]), validate=True)
        except ValueError:
            raise ConfigError(f"{where}.{key}_base64: not valid base64") from None
    if key not in spec or spec[key] is None:
        return None
    value = spec[key]
    return value.encode() if key == "key" and isinstance(value, str) else orjson.dumps(value)


def _headers(spec: Any, where: str) -> Headers:
    if spec is None:
        return ()
    pairs = spec.items() if isinstance(spec, dict) else spec
    try:
        return tuple((str(k), None if v is None else str(v).encode()) for k, v in pairs)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.headers: give a mapping or a list of [name, value]") from None


def _default_topic(settings: Settings) -> str | None:
    for m in settings.mappings:
        for t in m.topics:
            if not t.startswith("^"):
                return t
    named = [t for t in settings.kafka.topics if not t.startswith("^")]
    return named[0] if named else None


_RECORD_KEYS = {"topic", "partition", "offset", "timestamp", "headers"} | {
    f"{k}{s}" for k in ("key", "value") for s in ("", "_text", "_base64")
}
_EXPECT_KEYS = {"events", "error", "filtered", "customer"}


def load_cases(path: Path, settings: Settings) -> list[Case]:
    """The cases of a YAML (or JSON) file: a list of ``{name?, record, expect}``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FatalError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if isinstance(data, dict) and "cases" in data:
        data = data["cases"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path}: give a list of cases, each {{record: …, expect: …}}")
    cases = []
    for i, item in enumerate(data):
        where = f"{path}: case {i + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("record"), dict):
            raise ConfigError(f"{where}: needs a record mapping")
        rec, expect = item["record"], item.get("expect")
        unknown = set(rec) - _RECORD_KEYS
        if unknown:
            raise ConfigError(f"{where}.record: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(expect, dict) or len(set(expect) & _EXPECT_KEYS) != 1:
            raise ConfigError(
                f"{where}.expect: give exactly one of events, customer, error or filtered"
            )
        topic = rec.get("topic") or _default_topic(settings)
        if topic is None:
            raise ConfigError(f"{where}.record.topic: is required (no mapping names a topic)")
        record = SourceRecord(
            str(topic),
            int(rec.get("partition", 0)),
            int(rec.get("offset", i)),
            int(rec.get("timestamp", DEFAULT_TIMESTAMP_MS)),
            _bytes(rec, "key", where),
            _bytes(rec, "value", where),
            _headers(rec.get("headers"), where),
        )
        cases.append(Case(str(item.get("name") or f"case {i + 1}"), record, expect))
    return cases


def check(case: Case, got: Outcome) -> list[str]:
    """What differs between ``case.expect`` and ``got`` (empty: the case passes).

    ``events``: the same number of events, each holding every key the expected one gives
    (omit ``uniqueId`` to leave it unchecked).  ``error``: ``stage`` and ``class`` equal and
    ``message`` contained, each when given (a bare string is a message).  ``filtered``: the
    rule's label, or ``true`` for any rule.  ``customer``: a customer update holding every key
    the expected one gives (customerId, customerName, customerEmail, traits, plan)."""
    want = case.expect
    if "customer" in want:
        if got.customer is None:
            what = f"{got.stage} error: {got.message}" if got.stage else f"events {got.events}"
            return [f"expected a customer update, got {what}"]
        return [
            f"customer: {key} is {got.customer.get(key)!r}, not {value!r}"
            for key, value in (want["customer"] or {}).items()
            if got.customer.get(key) != value
        ]
    if "events" in want:
        if got.stage is not None:
            return [f"expected events, got {got.stage} error {got.error_class}: {got.message}"]
        if got.filtered is not None:
            return [f"expected events, got filtered by {got.filtered!r}"]
        expected = want["events"] or []
        if len(expected) != len(got.events):
            return [f"expected {len(expected)} event(s), got {len(got.events)}: {got.events}"]
        problems = []
        for n, (exp, actual) in enumerate(zip(expected, got.events, strict=True)):
            for key, value in exp.items():
                if actual.get(key) != value:
                    problems.append(f"event {n + 1}: {key} is {actual.get(key)!r}, not {value!r}")
        return problems
    if "error" in want:
        spec = want["error"]
        spec = {"message": spec} if isinstance(spec, str) else dict(spec or {})
        if got.stage is None:
            what = f"filtered by {got.filtered!r}" if got.filtered else f"events {got.events}"
            return [f"expected an error, got {what}"]
        problems = []
        if "stage" in spec and spec["stage"] != got.stage:
            problems.append(f"error stage is {got.stage!r}, not {spec['stage']!r}")
        if "class" in spec and spec["class"] != got.error_class:
            problems.append(f"error class is {got.error_class!r}, not {spec['class']!r}")
        if "message" in spec and str(spec["message"]) not in (got.message or ""):
            problems.append(f"error message {got.message!r} does not contain {spec['message']!r}")
        return problems
    rule = want["filtered"]
    if got.filtered is None:
        what = f"{got.stage} error: {got.message}" if got.stage else f"events {got.events}"
        return [f"expected the record filtered, got {what}"]
    if rule is not True and rule != got.filtered:
        return [f"filtered by {got.filtered!r}, not {rule!r}"]
    return []
