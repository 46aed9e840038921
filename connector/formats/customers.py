"""``kind: customer`` mappings: a record → a ``CustomerUpdate`` (create or replace the customer
in Amberflo, then assign its plan), for a team's own "customer created / plan changed" topics.

Keys (each a rule, as in usage mappings; docs/mappings.md):

* ``customer_id`` (required): a non-empty string (an integer is taken as its text);
* ``name``: the customer's name; no rule, or nothing found with a null default → the id;
* ``email``: text; nothing found with a null default → no email;
* ``traits``: either a rule finding an object (its members become traits) or a map of trait
  name → rule; trait values are text (``trait_text``), a null member is left out;
* ``plan``: the productPlanId to assign; nothing found with a null default → none;
* ``time``: when the update happened (as for usage; default: the format's event time, else the
  Kafka timestamp).  A plan is assigned as of this time (``pipeline/customers.py``).

Pure and deterministic like every mapper: replace semantics make a re-applied update a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from connector.errors import MappingError
from connector.formats.config import Mapping as MappingEntry
from connector.formats.config import Rule
from connector.formats.fields import TEXT, TIME, Code, Kind, dimension_text, field_code
from connector.formats.rules import Decoder, Envelope
from connector.records import CustomerUpdate, SourceRecord


def trait_text(value: Any, field: str) -> str | None:
    """A trait value as Amberflo's text: strings as they are, numbers and booleans as for
    dimensions, objects and lists as compact JSON; None (null) → None (left out)."""
    if value is None:
        return None
    if type(value) in (dict, list):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError as exc:
            raise MappingError(field, f"cannot be written as JSON ({exc})") from None
    return dimension_text(value, field)


def traits_of(value: Any, field: str, clean: Callable[[str], str] | None = None) -> dict[str, str]:
    """The members of a JSON object as traits (``clean`` applied to each value)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingError(field, f"must be an object (got {type(value).__name__})")
    out = {}
    for key, member in value.items():
        text = trait_text(member, f"{field}.{key}")
        if text is not None:
            out[key] = clean(text) if clean else text
    return out


def _field(key: str, rule: Rule, kind: Kind) -> Callable[[Any, Any], Any]:
    """The rule as a function of the payload and the CloudEvents attributes its ``$ce`` path
    reads (``fields.field_code``: checked value, default, or a MappingError naming the key and
    the rule)."""
    code = Code()
    field_code(code, "found", key, rule, kind)
    code.add("return found")
    return code.build("def get(payload, attributes=None):", "get", f"{key} rule")


def _optional_text(key: str, rule: Rule | None) -> Callable[[Any, Any], str | None]:
    if rule is None:
        return lambda _payload, _attributes: None
    return _field(key, rule, TEXT)


class CustomerMapper:
    """The ``Mapper`` of a ``kind: customer`` entry: ``decode``, then the customer rules."""

    __slots__ = ("_customer", "_decode", "_email", "_name", "_plan", "_time", "_traits")

    def __init__(self, decode: Decoder, mapping: MappingEntry) -> None:
        assert mapping.customer_id is not None
        self._decode = decode
        self._customer = _field("customer_id", mapping.customer_id, TEXT)
        self._name = _optional_text("name", mapping.name)
        self._email = _optional_text("email", mapping.email)
        self._plan = _optional_text("plan", mapping.plan)
        time = mapping.time
        self._time = None if time is None else _field("time", time, TIME[time.unit or "ms"])
        traits = mapping.traits
        if isinstance(traits, Rule):
            whole = _field("traits", traits, Kind(lambda v, _f: v))
            self._traits: Callable[[Any, Any], Mapping[str, str]] = lambda p, a: traits_of(
                whole(p, a), "traits"
            )
        else:
            kind = Kind(trait_text)
            fields = [(k, _field(f"traits.{k}", r, kind)) for k, r in (traits or {}).items()]
            self._traits = lambda p, a: _named_traits(fields, p, a)

    def __call__(self, record: SourceRecord) -> CustomerUpdate:
        decoded = self._decode(record)
        event_time = attributes = None
        if type(decoded) is Envelope:
            decoded, _identity, event_time, attributes = decoded
        customer = self._customer(decoded, attributes)
        if self._time is not None:
            time_ms = self._time(decoded, attributes)
        elif event_time is not None:
            time_ms = event_time
        else:
            time_ms = record.timestamp_ms
            if time_ms <= 0:
                raise MappingError("time", "no time rule and the Kafka record has no timestamp")
        return CustomerUpdate(
            customer,
            self._name(decoded, attributes) or customer,
            self._email(decoded, attributes),
            self._traits(decoded, attributes),
            self._plan(decoded, attributes),
            time_ms // 1000,
        )

    evaluate = __call__


def _named_traits(
    fields: list[tuple[str, Callable[[Any, Any], str | None]]], payload: Any, attributes: Any
) -> Mapping[str, str]:
    out = {}
    for key, get in fields:
        text = get(payload, attributes)
        if text is not None:
            out[key] = text
    return out
