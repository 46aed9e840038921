"""The generated Avro readers against fastavro: on random schemas and values they read exactly
what fastavro reads, and on corrupted bytes they never accept what fastavro refuses."""

from __future__ import annotations

import io
import itertools
import math
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.formats.avro_code import AvroError, compile_reader

_names = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]


def _schemas(depth: int) -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.sampled_from(PRIMITIVES),
        st.builds(lambda: {"type": "enum", "name": _name("E"), "symbols": ["A", "B", "C"]}),
        st.integers(0, 5).map(lambda n: {"type": "fixed", "name": _name("F"), "size": n}),
    )
    if depth == 0:
        return leaf
    inner = _schemas(depth - 1)
    return st.one_of(
        leaf,
        inner.map(lambda s: {"type": "array", "items": s}),
        inner.map(lambda s: {"type": "map", "values": s}),
        st.lists(inner, min_size=0, max_size=4).map(
            lambda ts: {
                "type": "record",
                "name": _name("R"),
                "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(ts)],
            }
        ),
        st.lists(st.sampled_from(PRIMITIVES), min_size=1, max_size=4, unique=True),  # union
    )


def _values(schema: Any) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        return st.one_of(*(_values(s) for s in schema))
    if isinstance(schema, str):
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=20),
            "string": st.text(max_size=10),
        }[schema]
    kind = schema["type"]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(_values(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=5), _values(schema["values"]), max_size=4)
    return st.fixed_dictionaries({f["name"]: _values(f["type"]) for f in schema["fields"]})


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, Any]:
    schema = draw(_schemas(3))
    return schema, draw(_values(schema))


def _compile(schema: Any) -> tuple[Any, Any]:
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(schema, named_schemas=named)
    reader = compile_reader(parsed, named)
    assert reader is not None
    return parsed, reader


def _fastavro(parsed: Any, data: bytes) -> tuple[Any, int]:
    fo = io.BytesIO(data)
    return fastavro.schemaless_reader(fo, parsed, None), fo.tell()


def _same(a: Any, b: Any) -> bool:
    """Equal, with -0.0 told apart from 0.0 (the bytes differ)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_reads_what_fastavro_reads(case: tuple[Any, Any]) -> None:
    schema, value = case
    parsed, reader = _compile(schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, value)
    data = b"\x00\x01" + buf.getvalue()  # read from an offset, as after a wire header
    got, end = reader(data, 2)
    want, _ = _fastavro(parsed, data[2:])
    assert end == len(data)
    assert _same(got, want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.data())
def test_never_accepts_bytes_fastavro_refuses(case: tuple[Any, Any], data: st.DataObject) -> None:
    schema, value = case
    parsed, reader = _compile(schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, value)
    raw = bytearray(buf.getvalue())
    how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif how == "cut" and raw:
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=4))
    try:
        got, end = reader(bytes(raw), 0)
    except (AvroError, IndexError, struct.error, UnicodeDecodeError):
        return
    if end > len(raw):  # cut short: the caller refuses it
        return
    want, want_end = _fastavro(parsed, bytes(raw))
    assert end == want_end and _same(got, want)


def test_recursive_schemas_read_through_a_function_of_their_own() -> None:
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "v", "type": "long"},
            {"name": "next", "type": ["null", "Node"]},
            {"name": "kids", "type": {"type": "array", "items": "Node"}},
        ],
    }
    parsed, reader = _compile(schema)
    value = {"v": 1, "next": {"v": 2, "next": None, "kids": []}, "kids": [
        {"v": 3, "next": None, "kids": []}]}  # fmt: skip
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, value)
    assert reader(buf.getvalue(), 0) == (value, len(buf.getvalue()))


@pytest.mark.parametrize(
    ("schema", "data", "reason"),
    [
        ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x01", "enum index -1"),
        (["null", "long"], b"\x04", "union index 2"),
        ("long", b"\xff" * 11, "longer than 10 bytes"),
        ("long", b"\xff" * 9 + b"\x02", "beyond 64 bits"),
        ("int", b"\x80" * 10 + b"\x00", "longer than 10 bytes"),
        ({"type": "array", "items": "null"}, b"\xfe\xff\xff\xff\x0f", "cannot fit"),
        ({"type": "array", "items": "long"}, b"\x10\x02", "cannot fit"),
        ("bytes", b"\x01", "negative length -1"),
        ("string", b"\x83\x00", "negative length -2"),
    ],
)
def test_refuses_what_is_not_avro(schema: Any, data: bytes, reason: str) -> None:
    _parsed, reader = _compile(schema)
    with pytest.raises(AvroError, match=reason):
        reader(data, 0)


_EDGES = [
    e for k in range(1, 10) for b in (7 * k - 1,) for e in (2**b - 1, 2**b, -(2**b), -(2**b) - 1)
]


@pytest.mark.parametrize("value", [0, -1, *_EDGES, 2**63 - 1, -(2**63)])
def test_varints_of_every_length_read_as_fastavro_and_fail_cut_short(value: int) -> None:
    parsed, reader = _compile("long")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, value)
    data = buf.getvalue()
    assert reader(data + b"\x00", 0) == (value, len(data)) == _fastavro(parsed, data)
    with pytest.raises(IndexError):
        reader(data[:-1], 0)


@pytest.mark.parametrize(("data", "value"), [(b"\x00", False), (b"\x01", True), (b"\x02", True)])
def test_a_boolean_is_any_non_zero_byte_as_in_fastavro(data: bytes, value: bool) -> None:
    parsed, reader = _compile("boolean")
    assert reader(data, 0) == (value, 1) and _fastavro(parsed, data) == (value, 1)


def test_a_value_cut_short_ends_past_the_data() -> None:
    _parsed, reader = _compile("string")
    assert reader(b"\x08ab", 0) == ("ab", 5)  # 4 bytes announced, 2 there: the caller refuses


def test_logical_types_stay_with_fastavro() -> None:
    schema = {"type": "long", "logicalType": "timestamp-micros"}
    assert compile_reader(fastavro.parse_schema(schema), {}) is None
