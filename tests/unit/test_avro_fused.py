"""The fused Avro mapper (``formats/avro_fused.py``: paths read straight from the generated
reader's locals) against the general one (the body decoded into dicts, then the rules' paths):
on random writer schemas, values, rules and corrupted bytes, the same events byte for byte as
the sink sends them, or the same error (type, stage, field, message)."""

from __future__ import annotations

import io
import struct
import uuid
from typing import Any

import fastavro
import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.errors import DecodeError, MappingError, RecordError
from connector.formats.avro import ConfluentAvro, SchemalessAvro, WriterSchemas, plain, reader_of
from connector.formats.config import Mapping
from connector.formats.ids import UniqueIds
from connector.formats.rules import Rules
from connector.records import SourceRecord
from tests.unit.test_avro_code import PRIMITIVES, _schemas, _values

NS = uuid.UUID("6f1c2a5e-0d7b-4c1e-9a55-3f0b7f2d9c11")
TS = 1_700_000_000_000
_names = st.sampled_from(["f0", "f1", "f2", "f3"])
_step = st.one_of(_names, _names, _names, st.sampled_from(["zz", 0, 1, -1]))
_path = st.tuples(_names, st.lists(_step, max_size=3)).map(
    lambda t: t[0] + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in t[1])
)


def _steps_text(steps: list[Any]) -> str:
    return "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in steps).lstrip(".")


@st.composite
def _path_in(draw: st.DrawFn, schema: Any) -> str:
    """A path that mostly follows ``schema`` (a record): through its fields, array items,
    map values and union branches, sometimes stopping early or stepping off it."""
    steps: list[Any] = []
    node = schema
    while True:
        kind = node.get("type") if isinstance(node, dict) else None
        if isinstance(node, list):  # a union: follow one branch
            node = draw(st.sampled_from(node))
            continue
        if kind == "record" and node["fields"] and draw(st.integers(0, 9)) < 9:
            field = draw(st.sampled_from(node["fields"]))
            steps.append(field["name"])
            node = field["type"]
        elif kind == "array":
            steps.append(draw(st.sampled_from([0, -1, 3])))
            node = node["items"]
        elif kind == "map":
            steps.append(draw(st.sampled_from(["a", "", "zz"])))
            node = node["values"]
        else:
            if draw(st.integers(0, 5)) == 5:
                steps.append(draw(st.sampled_from(["zz", 0])))
            break
        if draw(st.integers(0, 5)) == 5:
            break
    return _steps_text(steps) if steps and isinstance(steps[0], str) else "zz"


def _rule(paths: st.SearchStrategy[str], default: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    plain = paths.map(lambda p: {"path": p})
    given = st.tuples(paths, default).map(lambda t: {"path": t[0], "default": t[1]})
    return st.one_of(plain, given)


@st.composite
def _entries(draw: st.DrawFn, schema: Any) -> dict[str, Any]:
    paths = st.one_of(_path_in(schema), _path)  # hypothesis draws the first more often
    entry: dict[str, Any] = {"topics": ["t"], "format": "avro"}
    entry["customer_id"] = draw(st.one_of(st.just("acme"), _rule(paths, st.just("dflt"))))
    if draw(st.booleans()):
        b = _rule(paths, st.none())
        entry["meters"] = {"a": draw(_rule(paths, st.just(1))), "b": draw(b)}
    else:
        entry["meter"] = draw(st.one_of(st.just("m"), _rule(paths, st.just("m2"))))
        if draw(st.booleans()):
            entry["value"] = draw(_rule(paths, st.sampled_from([1, 2.5])))
    if draw(st.booleans()):
        unit = draw(st.sampled_from(["ms", "s", "iso8601"]))
        entry["time"] = {**draw(_rule(paths, st.just(TS))), "unit": unit}
    if draw(st.booleans()):
        entry["unique_id"] = draw(_rule(paths, st.just("u")))
    dims = draw(st.lists(_rule(paths, st.sampled_from([None, "d", 3])), min_size=1, max_size=3))
    entry["dimensions"] = {f"k{i}": rule for i, rule in enumerate(dims)}
    if dims and draw(st.booleans()):
        action = draw(st.sampled_from(["INCLUDE", "EXCLUDE"]))
        entry["filters"] = [{"dimension": "k0", "values": ["A", "0", "true", ""], "action": action}]
    return entry


@st.composite
def _records(draw: st.DrawFn) -> tuple[Any, list[bytes]]:
    """A record schema and bodies of it: written by fastavro, some of them corrupted."""
    primitive = st.sampled_from(PRIMITIVES)  # often, so that rules find values they take
    fields = draw(st.lists(st.one_of(primitive, primitive, _schemas(2)), min_size=1, max_size=4))
    schema = {
        "type": "record",
        "name": f"Root{uuid.uuid4().hex}",
        "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(fields)],
    }
    parsed = fastavro.parse_schema(schema)
    bodies = []
    for _ in range(3):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, draw(_values(schema)))
        body = buf.getvalue()
        cut = draw(st.sampled_from(["whole", "whole", "whole", "short", "long", "flip"]))
        if cut == "short" and body:
            body = body[: draw(st.integers(0, len(body) - 1))]
        elif cut == "long":
            body += b"\x00"
        elif cut == "flip" and body:
            i = draw(st.integers(0, len(body) - 1))
            body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :]
        bodies.append(body)
    return schema, bodies


def _outcome(mapper: Any, record: SourceRecord) -> tuple[Any, ...]:
    try:
        events = mapper(record)
    except RecordError as exc:
        return (type(exc), exc.stage, exc.field, str(exc))
    return ("events", repr(events), orjson.dumps([e.payload() for e in events]))


def _mappers(entry: dict[str, Any], client: Any) -> tuple[Any, Any]:
    mapping = Mapping.model_validate(entry)
    decoder = ConfluentAvro(WriterSchemas(client, "http://registry.test"))
    own = ConfluentAvro(WriterSchemas(client, "http://registry.test"))  # its own caches
    ids = UniqueIds(NS)
    general = Rules(mapping, 0).bind(lambda record: own(record), ids)
    fused = Rules(mapping, 0).bind(decoder, ids)
    assert fused.__qualname__ == "confluent.<locals>.mapper"  # not the general mapper
    return general, fused


def _client() -> Any:
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records(), st.sampled_from([TS, 0]), st.data())
def test_fused_maps_as_the_general_mapper(
    case: tuple[Any, list[bytes]], timestamp: int, data: st.DataObject
) -> None:
    schema, bodies = case
    entry = data.draw(_entries(schema))
    try:
        general, fused = _mappers(entry, client := _client())
    except (ValidationError, MappingError):  # a rule refused at start: not this test's
        assume(False)
    schema_id = client.register_schema("t-value", Schema(orjson.dumps(schema).decode(), "AVRO"))
    header = b"\x00" + struct.pack(">I", schema_id)
    for offset, body in enumerate(bodies):
        record = SourceRecord("t", 1, offset, timestamp, None, header + body)
        assert _outcome(fused, record) == _outcome(general, record)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PRIMITIVES), min_size=1, max_size=5), st.data())
def test_fused_maps_flat_records_as_the_general_mapper(
    types: list[str], data: st.DataObject
) -> None:
    """Every rule on a field of a flat record: the values each key takes without a test
    (``Kind.sure``) and those it converts or refuses, field type by field type."""
    schema = {"type": "record", "name": "Flat", "fields": [
        {"name": f"f{i}", "type": t} for i, t in enumerate(types)]}  # fmt: skip
    field = st.sampled_from([f"f{i}" for i in range(len(types))])
    entry = {
        "topics": ["t"],
        "format": "avro",
        "customer_id": {"path": data.draw(field), "default": "dflt"},
        "meter": "m",
        "value": {"path": data.draw(field), "default": 1},
        "time": {"path": data.draw(field), "default": TS, "unit": "ms"},
        "dimensions": {f"k{i}": {"path": f"f{i}", "default": None} for i in range(len(types))},
    }
    general, fused = _mappers(entry, client := _client())
    schema_id = client.register_schema("t-value", Schema(orjson.dumps(schema).decode(), "AVRO"))
    parsed = fastavro.parse_schema(schema)
    for offset in range(3):
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", schema_id))
        fastavro.schemaless_writer(buf, parsed, data.draw(_values(schema)))
        record = SourceRecord("t", 1, offset, TS, None, buf.getvalue())
        assert _outcome(fused, record) == _outcome(general, record)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records(), st.data())
def test_fused_maps_schemaless_bodies_as_the_general_mapper(
    case: tuple[Any, list[bytes]], data: st.DataObject
) -> None:
    schema, bodies = case
    try:
        mapping = Mapping.model_validate(data.draw(_entries(schema)))
        named: dict[str, Any] = {}
        parsed = fastavro.parse_schema(plain(schema), named_schemas=named)
        decoder = SchemalessAvro(reader_of(parsed, named), "schema s.avsc", (parsed, named))
        general = Rules(mapping, 0).bind(lambda record: decoder(record), UniqueIds(NS))
        fused = Rules(mapping, 0).bind(decoder, UniqueIds(NS))
    except (ValidationError, MappingError):
        assume(False)
    assert fused.__qualname__ == "schemaless.<locals>.mapper"
    for offset, body in enumerate([*bodies, None]):
        record = SourceRecord("t", 1, offset, TS, None, body)
        assert _outcome(fused, record) == _outcome(general, record)


NESTED = {
    "type": "record",
    "name": "Call",
    "fields": [
        {"name": "tenant", "type": {"type": "record", "name": "Tenant", "fields": [
            {"name": "id", "type": "string"}, {"name": "tags", "type": {
                "type": "map", "values": "string"}}]}},
        {"name": "owner", "type": "Tenant"},
        {"name": "usage", "type": ["null", {"type": "record", "name": "Usage", "fields": [
            {"name": "n", "type": "long"}]}]},
        {"name": "items", "type": {"type": "array", "items": "Usage"}},
        {"name": "next", "type": ["null", "Call"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}  # fmt: skip
CALL = {
    "tenant": {"id": "acme", "tags": {"plan": "pro"}},
    "owner": {"id": "bob", "tags": {}},
    "usage": {"n": 3},
    "items": [{"n": 4}],
    "next": {"tenant": {"id": "x", "tags": {}}, "owner": {"id": "y", "tags": {}}, "usage": None,
             "items": [], "next": None, "ts": 5},
    "ts": TS,
}  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "want"),
    [
        ({"customer_id": {"path": "tenant.id"}, "value": {"path": "usage.n"}}, ("acme", 3)),
        ({"customer_id": {"path": "owner.id"}, "value": {"path": "items[0].n"}}, ("bob", 4)),
        ({"customer_id": {"path": "next.tenant.id"}, "value": {"path": "next.ts"}}, ("x", 5)),
        ({"customer_id": {"path": "tenant.tags.plan"}, "value": {"path": "ts"}}, ("pro", TS)),
        ({"customer_id": {"path": "tenant"}}, "customer_id {path: tenant}: must be a non-empty "
         "string (got object {'id': 'acme', 'tags': {'plan': 'pro'}})"),
        ({"customer_id": {"path": "tenant[0]", "default": "d"}, "value": {"path": "nope",
          "default": 2}}, ("d", 2)),
    ],
)  # fmt: skip
def test_paths_through_named_types_unions_arrays_maps_and_recursion(
    rules: dict[str, Any], want: Any
) -> None:
    entry = {"topics": ["t"], "format": "avro", "meter": "m", **rules}
    client = _client()
    general, fused = _mappers(entry, client)
    schema_id = client.register_schema("t-value", Schema(orjson.dumps(NESTED).decode(), "AVRO"))
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(NESTED), CALL)
    record = SourceRecord("t", 0, 1, TS, None, buf.getvalue())
    got = _outcome(fused, record)
    assert got == _outcome(general, record)
    if isinstance(want, str):
        assert got[3] == want
    else:
        [event] = fused(record)
        assert (event.customer_id, event.meter_value) == want


def test_a_schema_left_to_fastavro_is_mapped_the_general_way() -> None:
    schema = {"type": "record", "name": "M", "fields": [
        {"name": "id", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}  # fmt: skip
    entry = {"topics": ["t"], "format": "avro", "meter": "m", "customer_id": {"path": "id"}}
    client = _client()
    general, fused = _mappers(entry, client)
    schema_id = client.register_schema("t-value", Schema(orjson.dumps(schema).decode(), "AVRO"))
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"id": "a", "at": 1})
    record = SourceRecord("t", 0, 1, TS, None, buf.getvalue())
    assert _outcome(fused, record) == _outcome(general, record)
    assert fused(record)[0].customer_id == "a"
    cut = record._replace(value=buf.getvalue()[:-1])
    assert _outcome(fused, cut) == _outcome(general, cut)
    with pytest.raises(DecodeError, match="EOFError"):  # fastavro's own error, as in general
        fused(cut)


@pytest.mark.parametrize("depth", [9, 10, 11, 12])
def test_schemas_nested_beyond_what_python_compiles_are_mapped_the_general_way(depth: int) -> None:
    inner: Any = "string"
    for _ in range(depth):
        inner = {"type": "array", "items": inner}
    schema = {"type": "record", "name": "D", "fields": [
        {"name": "id", "type": "string"}, {"name": "deep", "type": inner}]}  # fmt: skip
    entry = {"topics": ["t"], "format": "avro", "meter": "m", "customer_id": {"path": "id"}}
    client = _client()
    general, fused = _mappers(entry, client)
    schema_id = client.register_schema("t-value", Schema(orjson.dumps(schema).decode(), "AVRO"))
    value: Any = ["x"]
    for _ in range(depth - 1):
        value = [value]
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"id": "a", "deep": value})
    record = SourceRecord("t", 0, 1, TS, None, buf.getvalue())
    assert _outcome(fused, record) == _outcome(general, record)
    assert fused(record)[0].customer_id == "a"


def test_headers_are_checked_as_the_decoder_checks_them() -> None:
    """Before and after a schema's function is written: tombstones, short values, a wrong
    magic byte, an unknown id, a header seen before in front of a bad body."""
    entry = {"topics": ["t"], "format": "avro", "meter": "m", "customer_id": {"path": "id"}}
    schema = {"type": "record", "name": "H", "fields": [{"name": "id", "type": "string"}]}
    client = _client()
    general, fused = _mappers(entry, client)
    schema_id = client.register_schema("t-value", Schema(orjson.dumps(schema).decode(), "AVRO"))
    header = b"\x00" + struct.pack(">I", schema_id)
    values = [None, b"", b"\x00", header[:4], b"\x01" + header[1:] + b"\x02a"]
    values += [b"\x00" + struct.pack(">I", schema_id + 7) + b"\x02a", header + b"\x02a"]
    values += [header, header + b"\x04a", header + b"\x02a\x00", header[:4], b"\x01" + header[1:]]
    outcomes = []
    for offset, value in enumerate(values * 2):
        record = SourceRecord("t", 0, offset, TS, None, value)
        outcomes.append(_outcome(fused, record))
        assert outcomes[-1] == _outcome(general, record), value
    assert [o[0] for o in outcomes].count("events") == 2
