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

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from connector import metrics
from connector.errors import MappingError
from connector.formats.config import Mapping, Rule
from connector.formats.fields import DIMENSION, NUMBER, TEXT, TIME, Code, Read, field_code
from connector.formats.ids import UniqueIds
from connector.records import MeterEvent, SourceRecord

Decoder = Callable[[SourceRecord], Any]


class Envelope(NamedTuple):
    """What a decoder returns when its format has more than a payload (CloudEvents).

    ``payload`` is what the rules' paths read; ``identity`` (text naming the event uniquely,
    e.g. CloudEvents source and id) makes the default uniqueIds; ``time_ms`` is the default
    time; ``attributes`` are what ``{path: $ce.<name>}`` rules read.  A decoder of a plain
    format returns the payload itself."""

    payload: Any
    identity: str | None = None
    time_ms: int | None = None
    attributes: dict[str, Any] | None = None
    """The context attributes the rules read (``Mapping.attributes``): name → value, None
    when the event does not carry it."""


class Filtered(NamedTuple):
    """What a mapper's ``evaluate`` gives for a record a filter drops."""

    rule: str


class Rules:
    """One ``mappings`` entry compiled into the source of one function (``fields.Code``):
    every rule, constant and default is checked here, at start; ``bind`` makes the function
    of a topic, ``record → list[MeterEvent] | Filtered``."""

    def __init__(self, mapping: Mapping, index: int) -> None:
        self.where = f"mappings[{index}]"
        self.paths_only = all(r.expr is None and r.attribute is None for _k, r in mapping.rules())
        """True when every rule is a constant or a path into the payload (no expression, no
        CloudEvents attribute): a decoder may then read the paths itself (``fuse``)."""
        code = self.code = Code()
        code.namespace.update(Envelope=Envelope, MeterEvent=MeterEvent)
        dims = []
        for i, (name, rule) in enumerate(mapping.dimensions.items()):
            field_code(code, f"d{i}", f"dimensions.{name}", rule, DIMENSION)
            dims.append((name, f"d{i}", rule.has_default and rule.default is None))
        local = {name: var for name, var, _ in dims}
        for f in mapping.filters:
            values = code.ref(frozenset(f.values), "values")
            test = "not in" if f.action == "INCLUDE" else "in"
            code.add(f"if {local[f.dimension]} {test} {values}:")
            code.add(f"    return on_filter(record, {code.ref(Filtered(f.label), 'filtered')})")
        always = ", ".join(f"{name!r}: {var}" for name, var, optional in dims if not optional)
        code.add(f"dims = {{{always}}}")
        for name, var, optional in dims:
            if optional:
                code.add(f"if {var} is not None:", f"    dims[{name!r}] = {var}")
        assert mapping.customer_id is not None
        field_code(code, "customer", "customer_id", mapping.customer_id, TEXT)
        self._time(mapping)
        if mapping.unique_id is not None:
            field_code(code, "given", "unique_id", mapping.unique_id, TEXT)
        if mapping.meters is None:
            assert mapping.meter is not None
            field_code(code, "meter", "meter", mapping.meter, TEXT)
            field_code(code, "amount", "value", mapping.value or Rule(constant=1), NUMBER)
            uid = "given" if mapping.unique_id is not None else _derived("meter")
            code.add(f"return [MeterEvent(customer, meter, amount, time_ms, {uid}, dims)]")
            return
        code.add("events = []")
        for i, (name, rule) in enumerate(mapping.meters.items()):
            field_code(code, f"v{i}", f"meters.{name}", rule, NUMBER)
            uid = (
                f"given + {':' + name!r}" if mapping.unique_id is not None else _derived(repr(name))
            )
            append = f"events.append(MeterEvent(customer, {name!r}, v{i}, time_ms, {uid}, dims))"
            if rule.has_default and rule.default is None:
                code.add(f"if v{i} is not None:", f"    {append}")
            else:
                code.add(append)
        code.add("return events")

    def _time(self, mapping: Mapping) -> None:
        code = self.code
        if mapping.time is not None:
            kind = TIME[mapping.time.unit or "ms"]
            field_code(code, "time_ms", "time", mapping.time, kind)
            return
        no_time = code.ref(
            MappingError("time", "no time rule and the Kafka record has no timestamp"), "no_time"
        )
        code.add(
            "if event_time is not None:",
            "    time_ms = event_time",
            "else:",
            "    time_ms = record.timestamp_ms",
            "    if time_ms <= 0:",
            f"        raise {no_time}",
        )

    def bind(self, decode: Decoder, ids: UniqueIds) -> Callable[[SourceRecord], list[MeterEvent]]:
        """The ``Mapper`` of a topic read by these rules after ``decode``: the compiled
        function itself (no wrapper on the hot path).  Pure and deterministic (see
        ``connector.formats``); a filtered record counts in the filtered-records metric and
        gives ``[]``.  Its ``evaluate`` attribute, built from the same source, gives the
        events or the ``Filtered`` that drops the record, with no side effects (previews).

        A decoder with a ``fuse`` method (Avro) is given the rules, when they only read paths,
        and the general mapper: it returns a mapper that reads the paths itself from what it
        decodes, which must give the same events and errors as the general one."""
        self.code.namespace.update(decode=decode, derive=ids.derive, of=ids.of)
        title = f"{self.where} rules"
        mapper = self.code.build("def mapper(record):", "mapper", title, DECODE, on_filter=_count)
        evaluate = self.code.build(
            "def evaluate(record):", "evaluate", title, DECODE, on_filter=_give
        )
        mapper.evaluate = evaluate  # type: ignore[attr-defined]
        fuse = getattr(decode, "fuse", None)
        if fuse is None or not self.paths_only:
            return mapper
        fused: Callable[[SourceRecord], list[MeterEvent]] = fuse(self, mapper)
        fused.evaluate = evaluate  # type: ignore[attr-defined]
        return fused

    def build(
        self, header: str, name: str, head: Sequence[str], read: Read, **names: Any
    ) -> Callable[..., Any]:
        """The rules' function ``name`` (defined by ``header``) with its own ``head`` (which
        sets ``payload`` or what ``read`` reads from, and ``identity``, ``event_time``,
        ``attributes``) and each path read rendered by ``read`` (``fields.Code.source``);
        a filtered record counts in the metric and gives ``[]``, as in ``bind``'s mapper;
        ``names``: more objects ``head`` refers to."""
        title = f"{self.where} rules"
        return self.code.build(header, name, title, head, read, on_filter=_count, **names)


DECODE = (
    "payload = decode(record)",
    "identity = event_time = attributes = None",
    "if type(payload) is Envelope:",
    "    payload, identity, event_time, attributes = payload",
)
"""The head of the general mapper: the decoder's value, unpacked when it is an Envelope."""


def _count(record: SourceRecord, filtered: Filtered) -> list[MeterEvent]:
    metrics.FILTERED.labels(record.topic, filtered.rule).inc()
    return []


def _derived(meter: str) -> str:
    """The generated expression of a derived uniqueId: from the format's own event identity
    (CloudEvents), else from the record's coordinates (``UniqueIds.of``)."""
    return f"(of(record, {meter}) if identity is None else derive(identity, {meter}))"


def _give(_record: SourceRecord, filtered: Filtered) -> Filtered:
    return filtered


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
