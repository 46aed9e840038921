"""Pure mapping: decoded record → Amberflo meter events.  No I/O, no clock, no randomness.

Contract: for a given source record (its coordinates, timestamp and decoded value) and a given
namespace, ``map_native`` always returns the same events, byte for byte.  That is what makes a
replay after a crash harmless: Amberflo discards a re-sent identical event as a duplicate.

uniqueId rules
--------------
* the record carries ``uniqueId`` → it is used as is; when ``values`` expands the record into
  several meters each event gets ``<uniqueId>:<meterApiName>``;
* otherwise a UUID v5 of ``<topic>/<partition>/<offset>/<meterApiName>`` in the configured
  namespace.  A record re-published by ``dlq replay`` carries its original coordinates in the
  ``amberflo.origin`` header (``topic/partition/offset``), which wins over the record's own, so
  a replayed record keeps the uniqueId it would have had.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from connector.errors import DecodeError, MappingError
from connector.formats.ids import UniqueIds
from connector.records import MeterEvent, SourceRecord

_INT64_MIN = -(1 << 63)
_UINT64_END = 1 << 64
MAX_EVENTS_PER_RECORD = 1000
"""Default cap of the events one record may make (``values`` entries); the setting is
``CONNECTOR_TRANSFORM__MAX_EVENTS_PER_RECORD``."""


_decode_any = msgspec.json.Decoder().decode


def decode_json(value: bytes | None) -> Any:
    """Parse a JSON record value. Raises ``DecodeError`` (stage ``decode``) on tombstones,
    bad JSON and nesting deeper than Python's recursion limit.

    msgspec, not orjson: orjson reads an integer beyond 64 bits as a float (2^64 becomes
    1.8446744073709552e19, a silently different meter value), msgspec keeps it an ``int``,
    which the checks then refuse by name."""
    if value is None:
        raise DecodeError("record has no value (tombstone)")
    try:
        return _decode_any(value)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc
    except RecursionError:
        raise DecodeError("not valid JSON: nested too deeply") from None


def decode_record(record: SourceRecord) -> Any:
    """``decode_json(record.value)`` in one call on the hot path (format ``json``)."""
    raw = record.value
    if raw is not None:
        try:
            return _decode_any(raw)
        except (msgspec.DecodeError, RecursionError):
            pass
    return decode_json(raw)  # names the problem


def _fail(field: str, rule: str) -> MappingError:
    return MappingError(field, rule)


def check_number(value: Any, field: str) -> int | float:
    """``value`` as a meter value, or a MappingError naming ``field`` (every format's rule)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(field, f"must be a number (got {type(value).__name__})")
    if isinstance(value, int) and not _INT64_MIN <= value < _UINT64_END:
        raise _fail(field, "must be within the 64-bit integer range (-2^63 … 2^64-1)")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(field, "must be a finite number")
    return value


def check_time_ms(value: Any, field: str) -> int:
    """``value`` as a meter time in epoch milliseconds (an integral float is taken as its
    integer), or a MappingError naming ``field`` (every format's rule)."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or value <= 0:
        raise _fail(field, f"must be a positive integer (got {value!r})")
    if value >= _UINT64_END:  # no JSON encoder on the way to Amberflo takes it
        raise _fail(field, f"must be below 2^64 (got {value})")
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(field, "must be a non-empty string")
    return value


def _dimensions(value: Any) -> dict[str, str] | None:
    """The validated dimensions object itself (not copied: the event takes it over)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail("dimensions", "must be an object of string values")
    try:
        "".join(value.values())  # C-speed "every value is a str" check; TypeError otherwise
    except TypeError:
        for k, v in value.items():
            if not isinstance(v, str):
                raise _fail(
                    f"dimensions.{k}", f"must be a string (got {type(v).__name__})"
                ) from None
    return value


def map_native(
    record: SourceRecord, value: Any, ids: UniqueIds, max_events: int = MAX_EVENTS_PER_RECORD
) -> list[MeterEvent]:
    """Map a record already shaped like an Amberflo event (the native format).

    Fields: ``customerId`` (required), ``meterApiName`` (required unless ``values``),
    ``meterValue`` (default 1), ``meterTimeInMillis`` (default: the Kafka timestamp),
    ``dimensions``, ``uniqueId``, ``values`` ({meter: number}: one event per entry).
    Raises ``MappingError`` (stage ``transform``) naming the field and the rule.

    ``value`` is consumed: its ``dimensions`` object becomes part of the events, so the
    caller must not mutate it afterwards.  This runs once per record on the hot path, so the
    common cases are checked inline and the helpers only run to name a failure.
    """
    if not isinstance(value, dict):
        raise _fail("record", f"must be a JSON object (got {type(value).__name__})")
    get = value.get
    customer = get("customerId")
    if type(customer) is not str or not customer:
        customer = _text(customer, "customerId")

    time_ms = get("meterTimeInMillis")
    if time_ms is None:
        time_ms = record.timestamp_ms
        if time_ms <= 0:
            raise _fail("meterTimeInMillis", "missing and the Kafka record has no timestamp")
    if type(time_ms) is not int or not 0 < time_ms < _UINT64_END:
        time_ms = check_time_ms(time_ms, "meterTimeInMillis")

    dims = get("dimensions")
    if dims is not None:
        dims = _dimensions(dims)
    given_id = get("uniqueId")
    if given_id is not None:
        given_id = _text(given_id, "uniqueId")

    values = get("values")
    if values is None:
        meter = get("meterApiName")
        if type(meter) is not str or not meter:
            meter = _text(meter, "meterApiName")
        amount = get("meterValue", 1)
        if type(amount) is int:
            if not _INT64_MIN <= amount < _UINT64_END:
                amount = check_number(amount, "meterValue")
        elif type(amount) is not float or not math.isfinite(amount):
            amount = check_number(amount, "meterValue")
        uid = given_id or ids.of(record, meter)
        return [MeterEvent(customer, meter, amount, time_ms, uid, dims)]

    if not isinstance(values, dict) or not values:
        raise _fail("values", "must be a non-empty object of meterApiName → number")
    if len(values) > max_events:
        raise _fail(
            "values",
            f"has {len(values)} meters, more than the {max_events} events a record may make "
            "(CONNECTOR_TRANSFORM__MAX_EVENTS_PER_RECORD)",
        )
    events = []
    for meter, amount in values.items():
        _text(meter, "values")
        amount = check_number(amount, f"values.{meter}")
        uid = f"{given_id}:{meter}" if given_id else ids.of(record, meter)
        events.append(MeterEvent(customer, meter, amount, time_ms, uid, dims))
    return events


class _Native(msgspec.Struct):
    """The common shape of a native record, typed so that msgspec checks it in C while it
    decodes.  Anything this shape refuses is left to the general path, which names the
    problem (``decode_json`` + ``map_native``)."""

    customerId: Annotated[str, msgspec.Meta(min_length=1)]
    meterApiName: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    meterValue: int | float = 1
    meterTimeInMillis: Annotated[int, msgspec.Meta(gt=0)] | None = None
    dimensions: dict[str, str] | None = None
    uniqueId: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    values: Any = None


_decode_native = msgspec.json.Decoder(_Native).decode


def map_json(
    record: SourceRecord, ids: UniqueIds, max_events: int = MAX_EVENTS_PER_RECORD
) -> list[MeterEvent]:
    """``map_native(record, decode_json(record.value), ids)``: the same events and the same
    errors, faster for the common case (decode + transform 3.16 → 2.68 µs per record,
    BENCHMARKS.md).

    A record without ``values`` whose fields have their documented types is decoded and
    checked by msgspec in one C pass; every other record (``values``, a wrong type, bad JSON,
    a tombstone, an integer beyond 64 bits, a missing time without a Kafka timestamp) goes the
    general way, which stays the definition of the mapping.
    """
    raw = record.value
    if raw is not None:
        try:
            r = _decode_native(raw)
        except (msgspec.MsgspecError, RecursionError):
            pass
        else:
            meter = r.meterApiName
            amount = r.meterValue
            time_ms = r.meterTimeInMillis
            if time_ms is None:
                time_ms = record.timestamp_ms
            if (
                meter is not None
                and r.values is None
                and time_ms > 0
                # an integer beyond 64 bits: the general path names the problem
                and (type(amount) is float or _INT64_MIN <= amount < _UINT64_END)
                and time_ms < _UINT64_END
            ):
                uid = r.uniqueId or ids.of(record, meter)
                return [MeterEvent(r.customerId, meter, amount, time_ms, uid, r.dimensions)]
    return map_native(record, decode_json(raw), ids, max_events)
