"""Avro records mapped straight from the generated reader: per (writer schema, mapping), one
function that reads the body into locals and runs the mapping's rules on them.

The general way decodes a body into nested dicts (``avro_code``) and the rules then walk their
paths through them (``fields.chain``).  When every rule is a constant or a path
(``Rules.paths_only``), the paths can be followed through the writer schema once, when the
function is written: a path through record fields ends on the local its field was read into,
and nested records are read field by field without building their dicts.  This is the same
mapping, not a second one: the rules' lines are ``Rules``' own source with each path read
rendered from the locals, the body is read by the same generated code in the same order (so a
bad body fails with the same error, before any rule runs), and where the schema cannot settle
a path statically (a union, a map, an array, a recursive type, a path that ends on a record)
the value there is built as the general reader builds it and the rest of the path is
``fields.chain`` from it.  A path the schema rules out (a field no record has, an index into a
record) finds nothing, as a dict would.  A schema the generated readers leave to fastavro
(``compile_reader`` returns None) is mapped the general way.  A property test holds the fused
mapper to the general one: the same events, and the same errors.  Both ``avro`` (a function per
writer schema id, written on its first record) and ``avro-schemaless`` (one, at start) use it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connector.formats.avro_code import PRIMITIVE, Unsupported, _Gen
from connector.formats.fields import PathRead, chain
from connector.formats.paths import Step
from connector.records import MeterEvent, SourceRecord

if TYPE_CHECKING:
    from connector.formats.rules import Rules

Steps = tuple[Step, ...]
Fused = Callable[[SourceRecord, bytes], list[MeterEvent]]
"""``fused(record, data)``: the events of ``record``, whose value ``data`` is the body (after
the wire header, when there is one) written with the schema it was made for."""
Mapper = Callable[[SourceRecord], list[MeterEvent]]
_HEADER = struct.Struct(">BI").unpack_from


class _Routes(_Gen):
    """The reader, writing each value a path reads into a local and nothing else it needs
    not: ``found`` maps a path's steps to (the local's name, the steps still to take from it,
    the local's primitive type or None), or to None when the schema rules the path out."""

    def __init__(self, named: dict[str, Any]) -> None:
        super().__init__(named)
        self.prefix = "a"  # the rules' own locals are v0, d0, …
        self.found: dict[Steps, tuple[str, Steps, str | None] | None] = {}

    def route(self, schema: Any, ind: int, paths: list[tuple[Steps, Steps]]) -> None:
        """Emit the code reading one value of ``schema``; ``paths``: (a path, its steps from
        this value) for each path that reaches it."""
        record = self.record_of(schema)
        if record is None or any(not rest for _path, rest in paths):
            out = self.value(schema, ind)  # built as the general reader builds it
            for path, rest in paths:
                self.found[path] = (out, rest, self.primitive_of(schema))
            return
        self.expanding.append(record.get("name", ""))
        fields = record.get("fields", [])
        last = {field["name"]: i for i, field in enumerate(fields)}  # a dict keeps the last
        routed: list[list[tuple[Steps, Steps]]] = [[] for _ in fields]
        for path, rest in paths:
            i = last.get(rest[0]) if isinstance(rest[0], str) else None
            if i is None:  # an index into a record, or no such field: finds nothing
                self.found[path] = None
            else:
                routed[i].append((path, rest[1:]))
        for field, reaching in zip(fields, routed, strict=True):
            self.route(field["type"], ind, reaching)
        self.expanding.pop()

    def record_of(self, schema: Any) -> dict[str, Any] | None:
        """The record ``schema`` is, when ``value`` would read it inline (not a recursive
        reference, read by a function that builds it); None for any other type."""
        if isinstance(schema, str):
            if schema in PRIMITIVE or schema in self.expanding:
                return None
            if schema not in self.named:
                raise Unsupported(f"unknown type {schema!r}")
            return self.record_of(self.named[schema])
        if not isinstance(schema, dict) or "logicalType" in schema:
            return None
        kind = schema.get("type")
        if kind in ("record", "error"):
            return schema
        if kind in PRIMITIVE or kind in ("enum", "fixed", "array", "map"):
            return None
        return self.record_of(kind) if isinstance(kind, (str, list, dict)) else None

    def primitive_of(self, schema: Any) -> str | None:
        """The primitive type ``schema`` is (None: any other type)."""
        if isinstance(schema, dict) and "logicalType" not in schema:
            schema = schema.get("type")
        return schema if isinstance(schema, str) and schema in PRIMITIVE else None

    def read(self, read: PathRead) -> list[str]:
        """The lines of a rule's path read (the ``fields.Read`` of the rules): its target set
        from the local the path ends on, checked as the rule checks it unless the schema
        says the value is of a type the rule takes whatever the value (``Kind.sure``)."""
        found = self.found[read.steps]
        if found is None or found[0] == "None":  # null has no fields or items either
            return ["x = None", *read.checks]
        local, rest, primitive = found
        if not rest and primitive in read.sure:
            return [f"{read.target} = {local}"]
        return [*chain(local, rest), *read.checks]


def fuse(schema: Any, named: dict[str, Any], rules: Rules, start: int, what: str) -> Fused | None:
    """The fused function of ``rules`` for bodies of ``schema`` (fastavro-parsed; ``named``:
    its named types) starting at ``start`` in the value; None when the generated readers
    leave ``schema`` to fastavro.  ``what`` names the schema in a ``DecodeError``."""
    from connector.formats.avro import _misfit, _undecodable

    gen = _Routes(named)
    body: list[str] = []
    gen.lines = body
    paths = sorted(set(rules.code.paths()), key=repr)
    try:
        gen.route(schema, 1, [(path, path) for path in paths])
        recursive = gen.recursive_source()
        helpers = gen.namespace()
        if recursive:
            exec(compile("\n".join(recursive), "<avro reader>", "exec"), helpers)
    except (Unsupported, SyntaxError, RecursionError):  # as compile_reader
        return None
    head = [
        "end = len(data)",
        f"p = {start}",
        "try:",
        "    pass",
        *body,
        "except Exception as exc:  # as read_body: these bytes' fault",
        "    raise undecodable(exc, what) from exc",
        "if p != end:",
        "    raise misfit(end - p, what)",
        "identity = event_time = None",  # Avro carries no identity or time of its own
    ]
    names = {**helpers, "undecodable": _undecodable, "misfit": _misfit, "what": what}
    try:
        fused: Fused = rules.build("def fused(record, data):", "fused", head, gen.read, **names)
    except (SyntaxError, RecursionError):  # nested too deep with the rules' try around it
        return None
    return fused


def confluent(schemas: Any, rules: Rules, general: Mapper) -> Mapper:
    """The mapper of a topic in the Confluent wire format (``avro.ConfluentAvro.fuse``): the
    header checked as the decoder checks it, then the fused function of the record's writer
    schema, written on its first record (``schemas``: the decoder's ``WriterSchemas``; a
    schema id it cannot fetch raises as the decoder does)."""
    from connector.formats.avro import _bad_header

    by_header: dict[bytes, Fused] = {}  # the five header bytes of a record → its function

    def written(data: Any) -> Fused:
        """The function of ``data``'s writer schema (first record of it, or a bad header)."""
        try:
            magic, schema_id = _HEADER(data)
        except (struct.error, TypeError):
            magic = -1
        if magic:
            raise _bad_header(data)
        schemas.get(schema_id)  # fetched once, or raises as the decoder does
        parsed, named = schemas.parsed[schema_id]
        fused = fuse(parsed, named, rules, 5, f"schema id {schema_id}")
        if fused is None:
            fused = lambda record, _data: general(record)  # noqa: E731
        by_header[data[:5]] = fused
        return fused

    def mapper(record: SourceRecord) -> list[MeterEvent]:
        data: Any = record.value
        try:  # a header seen before: checked then (a short value or None is never a key)
            fused = by_header[data[:5]]
        except (KeyError, TypeError):
            fused = written(data)
        return fused(record, data)

    return mapper


def schemaless(
    schema: Any, named: dict[str, Any], what: str, rules: Rules, general: Mapper
) -> Mapper:
    """The mapper of a topic of plain bodies of one local ``schema`` (format
    ``avro-schemaless``; ``what`` names it in a ``DecodeError``)."""
    from connector.errors import DecodeError

    fused = fuse(schema, named, rules, 0, what)
    if fused is None:
        return general
    run = fused

    def mapper(record: SourceRecord) -> list[MeterEvent]:
        data = record.value
        if data is None:
            raise DecodeError("record has no value (tombstone)")
        return run(record, data)

    return mapper
