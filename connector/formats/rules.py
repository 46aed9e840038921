"""Mapping rules: a decoded record → meter events, by a ``mappings`` entry compiled once.

What a rule of each key accepts (docs/mappings.md has the syntax and examples):

* ``customer_id``, ``meter``, ``unique_id``: a non-empty string; an integer is taken as its
  decimal text.  Anything else is a MappingError.
* ``value`` and each of ``meters``: a finite number within 64 bits (native's check); absent
  ``value`` rule → 1.  A ``meters`` entry whose ``default`` is null is skipped when absent.
* ``time``: ``unit`` ms (integer epoch milliseconds), s (epoch seconds, fractions rounded to
  the millisecond) or iso8601 (text; without a zone it is UTC), then native's range check.
  No ``time`` rule → the format's own event time (CloudEvents ``time``), else the Kafka
  record's timestamp.
* ``dimensions``: Amberflo dimensions are text, so a string is kept, a number is written in
  its shortest form (``3``, ``2.5``, ``3.0`` for a float 3.0, ``1e+20``), a boolean as
  ``true``/``false``; an object, a list or a non-finite number is a MappingError.  A
  dimension whose ``default`` is null is left out when absent.
* A path or expression that finds nothing (or null) takes the rule's ``default``; without one
  it is a MappingError naming the key and the rule.

uniqueIds (deterministic, so a re-read record is a duplicate Amberflo discards):

* a ``unique_id`` rule → its value, or ``<value>:<meter>`` per meter with ``meters``
  (native's ``values`` rule);
* else the format's own event identity (CloudEvents: ``source`` and ``id``) → a UUID v5 of
  ``<identity>/<meter>`` in the configured namespace;
* else exactly native's derivation: a UUID v5 of ``<topic>/<partition>/<offset>/<meter>``
  (the record's first coordinates, ``formats/ids.py``).

Filters run on the record's dimensions before anything else is checked: a record a filter
drops gives no events (it is committed at once) and counts once in
``amberflo_connector_records_filtered_total{topic,rule}``, whatever else is wrong with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from connector import metrics
from connector.errors import MappingError
from connector.formats.config import Mapping, Rule
from connector.formats.ids import UniqueIds, coordinates
from connector.formats.native import check_number, check_time_ms
from connector.formats.paths import Getter, expr_getter, path_getter
from connector.records import MeterEvent, SourceRecord

Decoder = Callable[[SourceRecord], Any]
Field = Callable[[Any], Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Envelope(NamedTuple):
    """What a decoder returns when its format has more than a payload (CloudEvents).

    ``payload`` is what the rules' paths read; ``identity`` (text naming the event uniquely,
    e.g. CloudEvents source and id) makes the default uniqueIds; ``time_ms`` is the default
    time.  A decoder of a plain format returns the payload itself."""

    payload: Any
    identity: str | None = None
    time_ms: int | None = None


class Filtered(NamedTuple):
    """What ``RuleMapper.evaluate`` gives for a record a filter drops."""

    rule: str


def dimension_text(value: Any, field: str) -> str:
    """A dimension value as Amberflo's text (see the module docstring)."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return str(value)
    raise MappingError(field, f"must be a string, number or boolean (got {_kind(value)})")


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", float: "non-finite number"}.get(
        type(value), type(value).__name__
    )


def _text(value: Any, field: str) -> str:
    if type(value) is int:
        return str(value)
    if type(value) is not str or not value:
        raise MappingError(field, f"must be a non-empty string (got {_kind(value)} {value!r})")
    return value


def _seconds(value: Any, field: str) -> int:
    if type(value) is int:
        return check_time_ms(value * 1000, field)
    if type(value) is float and math.isfinite(value):
        return check_time_ms(round(value * 1000), field)
    raise MappingError(field, f"must be epoch seconds (got {_kind(value)} {value!r})")


def iso_ms(value: Any, field: str) -> int:
    """Epoch milliseconds of an ISO-8601 / RFC 3339 time (no zone: UTC), range-checked."""
    if type(value) is not str:
        raise MappingError(field, f"must be an ISO-8601 time (got {_kind(value)} {value!r})")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise MappingError(field, f"is not an ISO-8601 time ({value!r})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return check_time_ms((when - _EPOCH) // _MS, field)


_TIME = {"ms": check_time_ms, "s": _seconds, "iso8601": iso_ms}


def _label(key: str, rule: Rule) -> str:
    if rule.path is not None:
        return f"{key} {{path: {rule.path}}}"
    if rule.expr is not None:
        return f"{key} {{expr: {rule.expr}}}"
    return key


def _getter(rule: Rule, label: str) -> Getter:
    return path_getter(rule.path) if rule.path is not None else expr_getter(str(rule.expr), label)


def _field(key: str, rule: Rule, check: Callable[[Any, str], Any]) -> Field:
    """The compiled rule: payload → checked value (or MappingError naming key and rule)."""
    label = _label(key, rule)
    if rule.constant is not None:
        constant = check(rule.constant, label)
        return lambda _payload: constant
    get = _getter(rule, label)
    if rule.has_default:
        default = None if rule.default is None else check(rule.default, f"{label} default")

        def with_default(payload: Any) -> Any:
            found = get(payload)
            return default if found is None else check(found, label)

        return with_default

    def required(payload: Any) -> Any:
        found = get(payload)
        if found is None:
            raise MappingError(label, "found nothing and the rule has no default")
        return check(found, label)

    return required


class Rules:
    """One ``mappings`` entry compiled: the per-record work is calls of the fields below."""

    def __init__(self, mapping: Mapping, index: int) -> None:
        assert mapping.customer_id is not None
        self.customer = _field("customer_id", mapping.customer_id, _text)
        self.meters: list[tuple[str | None, Field, bool]] = []
        if mapping.meters is not None:
            for name, rule in mapping.meters.items():
                skip = rule.has_default and rule.default is None
                self.meters.append((name, _field(f"meters.{name}", rule, check_number), skip))
            self.meter: Field | None = None
        else:
            assert mapping.meter is not None
            self.meter = _field("meter", mapping.meter, _text)
            value = mapping.value or Rule(constant=1)
            self.meters.append((None, _field("value", value, check_number), False))
        time = mapping.time
        self.time: Field | None = (
            None if time is None else _field("time", time, _TIME[time.unit or "ms"])
        )
        self.unique_id = (
            None if mapping.unique_id is None else _field("unique_id", mapping.unique_id, _text)
        )
        self.dimensions = [
            (name, _field(f"dimensions.{name}", rule, dimension_text))
            for name, rule in mapping.dimensions.items()
        ]
        self.filters = [
            (f.dimension, frozenset(f.values), f.action == "INCLUDE", f.label)
            for f in mapping.filters
        ]
        self.where = f"mappings[{index}]"


class RuleMapper:
    """The ``Mapper`` of a topic read by rules: ``decode`` then ``Rules``.

    Pure and deterministic (see ``connector.formats``); a filtered record counts in the
    filtered-records metric and gives ``[]``."""

    __slots__ = ("_decode", "_ids", "rules")

    def __init__(self, decode: Decoder, rules: Rules, ids: UniqueIds) -> None:
        self._decode = decode
        self._ids = ids
        self.rules = rules

    def __call__(self, record: SourceRecord) -> list[MeterEvent]:
        out = self.evaluate(record)
        if type(out) is Filtered:
            metrics.FILTERED.labels(record.topic, out.rule).inc()
            return []
        return out  # type: ignore[return-value]

    def evaluate(self, record: SourceRecord) -> list[MeterEvent] | Filtered:
        """The events of ``record``, or the filter that drops it (no side effects)."""
        decoded = self._decode(record)
        identity = event_time = None
        if type(decoded) is Envelope:
            decoded, identity, event_time = decoded
        r = self.rules
        dims: dict[str, str] = {}
        for dim_name, dim in r.dimensions:
            text = dim(decoded)
            if text is not None:
                dims[dim_name] = text
        for dimension, values, include, label in r.filters:
            if (dims.get(dimension) in values) is not include:
                return Filtered(label)
        customer = r.customer(decoded)
        if r.time is not None:
            time_ms = r.time(decoded)
        elif event_time is not None:
            time_ms = event_time
        else:
            time_ms = record.timestamp_ms
            if time_ms <= 0:
                raise MappingError("time", "no time rule and the Kafka record has no timestamp")
        given_id = None if r.unique_id is None else r.unique_id(decoded)
        events = []
        for name, amount_of, skip_absent in r.meters:
            meter = name if name is not None else r.meter(decoded)  # type: ignore[misc]
            amount = amount_of(decoded)
            if amount is None and skip_absent:
                continue
            if given_id is not None:
                uid = f"{given_id}:{meter}" if name else given_id
            else:
                uid = self._ids.derive(identity or coordinates(record), meter)
            events.append(MeterEvent(customer, meter, amount, time_ms, uid, dims))
        return events


class NativeFilter:
    """The native mapper with a ``native`` entry's filters, on the record's dimensions."""

    __slots__ = ("_filters", "_native")

    def __init__(self, native: Callable[[SourceRecord], list[MeterEvent]], mapping: Mapping):
        self._native = native
        self._filters = [
            (f.dimension, frozenset(f.values), f.action == "INCLUDE", f.label)
            for f in mapping.filters
        ]

    def __call__(self, record: SourceRecord) -> list[MeterEvent]:
        out = self.evaluate(record)
        if type(out) is Filtered:
            metrics.FILTERED.labels(record.topic, out.rule).inc()
            return []
        return out  # type: ignore[return-value]

    def evaluate(self, record: SourceRecord) -> list[MeterEvent] | Filtered:
        events = self._native(record)
        dims = events[0].dimensions if events else {}
        for dimension, values, include, label in self._filters:
            if (dims.get(dimension) in values) is not include:
                return Filtered(label)
        return events
