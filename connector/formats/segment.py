"""``format: segment``: a topic of Segment calls (the Segment spec's JSON), mapped the way
Amberflo's own Segment destination maps them (docs/segment.md).

* ``track`` → meter = ``event`` (or its ``segment.events`` rename), value =
  ``properties.value`` or 1, the other scalar properties → dimensions.  An event renamed to
  ``{meter: property, …}`` makes one event per meter, valued by that property (null: 1; a
  meter whose property is absent is left out); the properties used so are not dimensions.
* ``page`` → meter ``page``, value 1, the scalar properties → dimensions.
* ``screen`` → meter ``screen``, value 1, dimensions ``name`` (the call's) and ``title``
  (``properties.title``).
* ``identify`` → a ``CustomerUpdate``: customerId = ``userId``, customerName =
  ``traits.name`` (else the id), customerEmail = ``traits.email``, the other traits as text
  traits (``plan`` too), and the plan named by the ``segment.plan_trait`` trait (default
  ``plan``).  Without a ``userId``: skipped (counted, logged at debug level).
* ``group``, ``alias`` and any other type: skipped and counted, never dead-lettered.

Dimension and trait values are text with ``/`` and ``|`` replaced by ``_``, as the destination
does.  customerId = ``userId``, else ``anonymousId``; time = ``timestamp``, else ``sentAt``,
else the Kafka timestamp.  uniqueId = ``messageId``, ``<messageId>:<meter>`` when one call
makes several events; a call without ``messageId`` gets native's derived uniqueId
(``formats/ids.py``).  A record that is not a Segment call (not JSON, not an object, no
``type``, a track without ``event``, neither ``userId`` nor ``anonymousId``, a malformed time or
value) is a MappingError/DecodeError: dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from connector import metrics
from connector.errors import MappingError
from connector.formats.config import Mapping, SegmentOptions
from connector.formats.customers import trait_text, traits_of
from connector.formats.fields import dimension_text, iso_ms
from connector.formats.fields import text as _text
from connector.formats.ids import UniqueIds
from connector.formats.native import check_number, decode_json
from connector.formats.rules import Filtered
from connector.records import CustomerUpdate, MeterEvent, SourceRecord

log = logging.getLogger("connector.formats.segment")

SKIPPED_TYPES = ("group", "alias")
_SANITISE = str.maketrans({"/": "_", "|": "_"})


def sanitise(text: str) -> str:
    """``/`` and ``|`` → ``_`` (Amberflo's Segment destination does this to values)."""
    return text.translate(_SANITISE)


def _object(call: dict[str, Any], key: str) -> dict[str, Any]:
    value = call.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingError(key, f"must be an object (got {type(value).__name__})")
    return value


def _scalars(properties: dict[str, Any], skip: set[str] | frozenset[str]) -> dict[str, str]:
    """The scalar properties (strings, numbers, booleans) as sanitised dimension text."""
    out = {}
    for key, value in properties.items():
        if key in skip or value is None or type(value) in (dict, list):
            continue
        out[key] = sanitise(dimension_text(value, f"properties.{key}"))
    return out


class SegmentMapper:
    """The ``Mapper`` of a ``format: segment`` topic (pure and deterministic)."""

    __slots__ = ("_events", "_ids", "_plan_trait")

    def __init__(self, mapping: Mapping, ids: UniqueIds) -> None:
        options = mapping.segment or SegmentOptions.model_validate({})
        self._events = options.events
        self._plan_trait = options.plan_trait
        self._ids = ids

    def __call__(self, record: SourceRecord) -> list[MeterEvent] | CustomerUpdate:
        out = self.evaluate(record)
        if type(out) is Filtered:
            metrics.SKIPPED.labels(record.topic, out.rule).inc()
            return []
        return out  # type: ignore[return-value]

    def evaluate(self, record: SourceRecord) -> list[MeterEvent] | CustomerUpdate | Filtered:
        """What the call asks for, or the reason it is skipped (no side effects)."""
        call = decode_json(record.value)
        if not isinstance(call, dict):
            raise MappingError("call", f"must be a JSON object (got {type(call).__name__})")
        kind = call.get("type")
        if not isinstance(kind, str) or not kind:
            raise MappingError("type", "must name the Segment call (track, page, identify, …)")
        if kind == "identify":
            return self._identify(record, call)
        if kind not in ("track", "page", "screen"):
            return Filtered(f"segment {kind}" if kind in SKIPPED_TYPES else "segment unknown type")
        customer = call.get("userId")
        if customer is None or customer == "":
            customer = call.get("anonymousId")
            if customer is None or customer == "":
                raise MappingError("userId", "missing, and so is anonymousId")
            customer = _text(customer, "anonymousId")
        else:
            customer = _text(customer, "userId")
        time_ms = _time_ms(record, call)
        properties = _object(call, "properties")
        if kind == "page":
            return [
                self._event(
                    record, call, customer, "page", 1, time_ms, _scalars(properties, frozenset())
                )
            ]
        if kind == "screen":
            dims = {}
            for key, value in (("name", call.get("name")), ("title", properties.get("title"))):
                if value is not None:
                    dims[key] = sanitise(dimension_text(value, key))
            return [self._event(record, call, customer, "screen", 1, time_ms, dims)]
        event = _text(call.get("event"), "event")
        target = self._events.get(event, event)
        if isinstance(target, str):
            value = properties.get("value")
            amount = 1 if value is None else check_number(value, "properties.value")
            dims = _scalars(properties, frozenset(("value",)))
            return [self._event(record, call, customer, target, amount, time_ms, dims)]
        dims = _scalars(properties, {p for p in target.values() if p is not None})
        events = []
        for meter, prop in target.items():
            if prop is None:
                amount = 1
            elif properties.get(prop) is None:
                continue
            else:
                amount = check_number(properties[prop], f"properties.{prop}")
            events.append(
                self._event(record, call, customer, meter, amount, time_ms, dims, many=True)
            )
        return events

    def _event(
        self,
        record: SourceRecord,
        call: dict[str, Any],
        customer: str,
        meter: str,
        amount: int | float,
        time_ms: int,
        dims: dict[str, str],
        *,
        many: bool = False,
    ) -> MeterEvent:
        message_id = call.get("messageId")
        if message_id is None or message_id == "":
            uid = self._ids.of(record, meter)
        else:
            uid = _text(message_id, "messageId")
            if many:
                uid = f"{uid}:{meter}"
        return MeterEvent(customer, meter, amount, time_ms, uid, dims)

    def _identify(self, record: SourceRecord, call: dict[str, Any]) -> CustomerUpdate | Filtered:
        user = call.get("userId")
        if user is None or user == "":
            log.debug("%s: identify without userId skipped", self._ids.coordinates(record))
            return Filtered("segment identify without userId")
        customer = _text(user, "userId")
        traits = _object(call, "traits")
        name = traits.get("name")
        email = traits.get("email")
        plan = traits.get(self._plan_trait) if self._plan_trait else None
        others = {k: v for k, v in traits.items() if k not in ("name", "email")}
        return CustomerUpdate(
            customer,
            trait_text(name, "traits.name") or customer,
            None if email is None or email == "" else _text(email, "traits.email"),
            traits_of(others, "traits", sanitise),
            None if plan is None or plan == "" else trait_text(plan, f"traits.{self._plan_trait}"),
            _time_ms(record, call) // 1000,
        )


def _time_ms(record: SourceRecord, call: dict[str, Any]) -> int:
    for key in ("timestamp", "sentAt"):
        value = call.get(key)
        if value is not None:
            return iso_ms(value, key)
    if record.timestamp_ms <= 0:
        raise MappingError("timestamp", "missing, and so are sentAt and the Kafka timestamp")
    return record.timestamp_ms
