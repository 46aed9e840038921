"""Golden table of the mapping rules: input record → the exact events, or the exact error.

Every derived uniqueId below is spelled out through its definition (UUID v5 of a documented
name in the namespace) and two are frozen as literals: if one of them changes, records
re-read after an upgrade would be counted twice.  Never update those literals.
"""

import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import DecodeError, MappingError
from connector.formats import Mappers
from connector.formats.config import Rule
from connector.formats.fields import DIMENSION, NUMBER, TEXT, TIME, Code, Kind, field_code
from connector.formats.rules import Filtered
from connector.records import SourceRecord
from connector.settings import Settings

NS = uuid.UUID("6f1c2a5e-0d7b-4c1e-9a55-3f0b7f2d9c11")
TS = 1_700_000_000_000
BASE = {"format": "json", "customer_id": {"path": "tenant.id"}, "meter": "api_calls"}


def mapper(**rules: Any) -> Any:
    entry = {"topics": ["usage"], **BASE, **rules}
    s = Settings(
        kafka={"topics": ["usage"]},
        amberflo={"api_key": "k"},
        transform={"unique_id_namespace": str(NS)},
        mappings=[{k: v for k, v in entry.items() if v is not None}],
    )
    m = Mappers(s).for_topic("usage")
    assert callable(getattr(m, "evaluate", None))  # a rules mapper, not native
    return m


def rec(value: Any, offset: int = 7, ts: int = TS) -> SourceRecord:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return SourceRecord("usage", 2, offset, ts, None, raw)


def derived(meter: str, name: str = "usage/2/7") -> str:
    return str(uuid.uuid5(NS, f"{name}/{meter}"))


def ev(meter: str = "api_calls", value: Any = 1, **extra: Any) -> dict[str, Any]:
    body = {
        "customerId": extra.pop("customerId", "acme"),
        "meterApiName": meter,
        "meterValue": value,
        "meterTimeInMillis": extra.pop("time", TS),
        "uniqueId": extra.pop("uid", derived(meter)),
    }
    if "dims" in extra:
        body["dimensions"] = extra.pop("dims")
    assert not extra
    return body


T = {"tenant": {"id": "acme"}}

# (rules, record value, expected payloads)
GOLDEN: list[tuple[str, dict[str, Any], Any, list[dict[str, Any]]]] = [
    ("constant meter, value defaults to 1", {}, T, [ev()]),
    ("integer customer id becomes text", {}, {"tenant": {"id": 42}}, [ev(customerId="42")]),
    (
        "value path",
        {"value": {"path": "usage.requests"}},
        {**T, "usage": {"requests": 5}},
        [ev(value=5)],
    ),
    ("value float", {"value": {"path": "n"}}, {**T, "n": 2.5}, [ev(value=2.5)]),
    ("value default when absent", {"value": {"path": "n", "default": 3}}, T, [ev(value=3)]),
    (
        "value default when null",
        {"value": {"path": "n", "default": 3}},
        {**T, "n": None},
        [ev(value=3)],
    ),
    ("meter from a path", {"meter": {"path": "kind"}}, {**T, "kind": "io"}, [ev("io")]),
    (
        "list index",
        {"value": {"path": "items[1].n"}},
        {**T, "items": [{"n": 1}, {"n": 9}]},
        [ev(value=9)],
    ),
    ("negative index", {"value": {"path": "items[-1]"}}, {**T, "items": [4, 6]}, [ev(value=6)]),
    (
        "jmespath expression",
        {"value": {"expr": "length(items[?kind=='api'])"}},
        {**T, "items": [{"kind": "api"}, {"kind": "db"}, {"kind": "api"}]},
        [ev(value=2)],
    ),
    ("expression: a key with a dot", {"value": {"expr": '"a.b"'}}, {**T, "a.b": 4}, [ev(value=4)]),
    (
        "expression: the first that is there",
        {"customer_id": {"expr": "tenant.id || account.id"}},
        {"account": {"id": "acme"}},
        [ev()],
    ),
    (
        "expression: sum of a list",
        {"value": {"expr": "sum(items[*].bytes)"}},
        {**T, "items": [{"bytes": 5}, {"bytes": 7}]},
        [ev(value=12)],
    ),
    ("time ms", {"time": {"path": "ts", "unit": "ms"}}, {**T, "ts": TS + 5}, [ev(time=TS + 5)]),
    (
        "time unit defaults to ms",
        {"time": {"path": "ts"}},
        {**T, "ts": 1.7e12},
        [ev(time=1_700_000_000_000)],
    ),
    (
        "time s",
        {"time": {"path": "ts", "unit": "s"}},
        {**T, "ts": 1_767_225_600},
        [ev(time=1_767_225_600_000)],
    ),
    (
        "time s with fraction",
        {"time": {"path": "ts", "unit": "s"}},
        {**T, "ts": 1767225600.1234},
        [ev(time=1_767_225_600_123)],
    ),
    (
        "time iso8601 Z",
        {"time": {"path": "ts", "unit": "iso8601"}},
        {**T, "ts": "2026-01-01T00:00:00.250Z"},
        [ev(time=1_767_225_600_250)],
    ),
    (
        "time iso8601 with offset",
        {"time": {"path": "ts", "unit": "iso8601"}},
        {**T, "ts": "2026-01-01T02:00:00+02:00"},
        [ev(time=1_767_225_600_000)],
    ),
    (
        "time iso8601 naive is UTC",
        {"time": {"path": "ts", "unit": "iso8601"}},
        {**T, "ts": "2026-01-01T00:00:00"},
        [ev(time=1_767_225_600_000)],
    ),
    (
        "dimensions: text, numbers and booleans, default, left out",
        {
            "dimensions": {
                "region": {"path": "region"},
                "tier": {"path": "plan.tier", "default": "free"},
                "port": {"path": "port"},
                "ratio": {"path": "ratio"},
                "beta": {"path": "beta"},
                "zone": {"path": "zone", "default": None},
                "source": "api-gateway",
            }
        },
        {**T, "region": "eu", "port": 443, "ratio": 0.5, "beta": False},
        [
            ev(
                dims={
                    "region": "eu",
                    "tier": "free",
                    "port": "443",
                    "ratio": "0.5",
                    "beta": "false",
                    "source": "api-gateway",
                }
            )
        ],
    ),
    (
        "unique_id given",
        {"unique_id": {"path": "event_id"}},
        {**T, "event_id": "e-1"},
        [ev(uid="e-1")],
    ),
    ("integer unique_id", {"unique_id": {"path": "seq"}}, {**T, "seq": 17}, [ev(uid="17")]),
    (
        "meters: one record, several meters, derived ids per meter",
        {
            "meter": None,
            "meters": {"api_calls": {"path": "u.req"}, "bytes_out": {"path": "u.bytes"}},
        },
        {**T, "u": {"req": 3, "bytes": 2048}},
        [ev("api_calls", 3), ev("bytes_out", 2048)],
    ),
    (
        "meters with a unique_id: <id>:<meter>, as native's values",
        {
            "meter": None,
            "meters": {"api_calls": {"path": "u.req"}, "bytes_out": {"path": "u.bytes"}},
            "unique_id": {"path": "id"},
        },
        {**T, "id": "e-9", "u": {"req": 3, "bytes": 2048}},
        [ev("api_calls", 3, uid="e-9:api_calls"), ev("bytes_out", 2048, uid="e-9:bytes_out")],
    ),
    (
        "a meter whose default is null is skipped when absent",
        {"meter": None, "meters": {"a": {"path": "x"}, "b": {"path": "y", "default": None}}},
        {**T, "x": 1},
        [ev("a", 1)],
    ),
]


@pytest.mark.parametrize(
    ("rules", "value", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN]
)
def test_golden(rules: dict[str, Any], value: Any, expected: list[dict[str, Any]]) -> None:
    events = mapper(**rules)(rec(value))
    assert [e.payload() for e in events] == expected
    # deterministic: the same record again gives byte-identical events
    again = mapper(**rules)(rec(value))
    assert orjson.dumps([e.payload() for e in again]) == orjson.dumps(expected)


def test_frozen_derived_ids() -> None:
    # Never update these literals (see the module docstring).
    [a] = mapper()(rec(T))
    assert a.unique_id == "cc5fedc6-6cfe-5c00-8774-d9c3abba5a9f"
    assert a.unique_id == derived("api_calls") == str(uuid.uuid5(NS, "usage/2/7/api_calls"))
    two = mapper(meter=None, meters={"a": 1, "b": 2})(rec(T))
    assert [e.unique_id for e in two] == [derived("a"), derived("b")]


def test_the_kafka_timestamp_is_the_default_time_and_its_absence_an_error() -> None:
    assert mapper()(rec(T, ts=TS + 1))[0].time_ms == TS + 1
    with pytest.raises(
        MappingError, match="time: no time rule and the Kafka record has no timestamp"
    ):
        mapper()(rec(T, ts=-1))


def test_a_replayed_record_keeps_its_derived_id() -> None:
    replayed = rec(T, offset=99)._replace(
        topic="usage.dlq", headers=(("amberflo.origin", b"usage/2/7"),)
    )
    assert mapper()(replayed)[0].unique_id == derived("api_calls")


ERRORS: list[tuple[dict[str, Any], Any, type[Exception], str]] = [
    ({}, b"{nope", DecodeError, "not valid JSON"),
    ({}, None, DecodeError, "record has no value (tombstone)"),
    (
        {},
        {"tenant": {}},
        MappingError,
        "customer_id {path: tenant.id}: found nothing and the rule has no default",
    ),
    ({}, {"tenant": "acme"}, MappingError, "customer_id {path: tenant.id}: found nothing"),
    (
        {},
        {"tenant": {"id": ""}},
        MappingError,
        "customer_id {path: tenant.id}: must be a non-empty string (got str '')",
    ),
    (
        {},
        {"tenant": {"id": True}},
        MappingError,
        "customer_id {path: tenant.id}: must be a non-empty string (got bool True)",
    ),
    (
        {},
        {"tenant": {"id": {"x": 1}}},
        MappingError,
        "customer_id {path: tenant.id}: must be a non-empty string (got object",
    ),
    ({}, [1, 2], MappingError, "customer_id {path: tenant.id}: found nothing"),
    (
        {"value": {"path": "n"}},
        T,
        MappingError,
        "value {path: n}: found nothing and the rule has no default",
    ),
    (
        {"value": {"path": "n"}},
        {**T, "n": "3"},
        MappingError,
        "value {path: n}: must be a number (got str)",
    ),
    (
        {"value": {"path": "n"}},
        {**T, "n": True},
        MappingError,
        "value {path: n}: must be a number (got bool)",
    ),
    ({"value": {"path": "n"}}, b'{"tenant": {"id": "a"}, "n": NaN}', DecodeError, "not valid JSON"),
    (
        {"value": {"expr": "abs(n)"}},
        {**T, "n": "x"},
        MappingError,
        "value {expr: abs(n)}: expression 'abs(n)' failed",
    ),
    (
        {"meter": {"path": "kind"}},
        {**T, "kind": 5.5},
        MappingError,
        "meter {path: kind}: must be a non-empty string",
    ),
    (
        {"time": {"path": "ts"}},
        {**T, "ts": -5},
        MappingError,
        "time {path: ts}: must be a positive integer (got -5)",
    ),
    (
        {"time": {"path": "ts"}},
        {**T, "ts": 1.5},
        MappingError,
        "time {path: ts}: must be a positive integer (got 1.5)",
    ),
    (
        {"time": {"path": "ts"}},
        b'{"tenant": {"id": "acme"}, "ts": 18446744073709551616}',
        MappingError,
        "time {path: ts}: must be below 2^64 (got 18446744073709551616)",
    ),
    (
        {"time": {"path": "ts", "unit": "s"}},
        {**T, "ts": "now"},
        MappingError,
        "time {path: ts}: must be epoch seconds (got str 'now')",
    ),
    (
        {"time": {"path": "ts", "unit": "s"}},
        {**T, "ts": 2**60},
        MappingError,
        "time {path: ts}: must be below 2^64",
    ),
    (  # a finite float whose milliseconds are not: a dead letter, not an OverflowError
        {"time": {"path": "ts", "unit": "s"}},
        {**T, "ts": 1e308},
        MappingError,
        "time {path: ts}: must be below 2^64 ms (got 1e+308 s)",
    ),
    (
        {"time": {"path": "ts", "unit": "iso8601"}},
        {**T, "ts": "yesterday"},
        MappingError,
        "time {path: ts}: is not an ISO-8601 time ('yesterday')",
    ),
    (
        {"time": {"path": "ts", "unit": "iso8601"}},
        {**T, "ts": 5},
        MappingError,
        "time {path: ts}: must be an ISO-8601 time (got int 5)",
    ),
    (
        {"time": {"path": "ts", "unit": "iso8601"}},
        {**T, "ts": "1969-12-31T00:00:00Z"},
        MappingError,
        "time {path: ts}: must be a positive integer",
    ),
    (
        {"dimensions": {"r": {"path": "r"}}},
        T,
        MappingError,
        "dimensions.r {path: r}: found nothing and the rule has no default",
    ),
    (
        {"dimensions": {"r": {"path": "r"}}},
        {**T, "r": [1]},
        MappingError,
        "dimensions.r {path: r}: must be a string, number or boolean (got list)",
    ),
    (
        {"unique_id": {"path": "id"}},
        {**T, "id": 1.5},
        MappingError,
        "unique_id {path: id}: must be a non-empty string",
    ),
    (
        {"meter": None, "meters": {"a": {"path": "x"}}},
        T,
        MappingError,
        "meters.a {path: x}: found nothing",
    ),
]


@pytest.mark.parametrize(
    ("rules", "value", "error", "message"), ERRORS, ids=[e[3][:50] for e in ERRORS]
)
def test_golden_errors(
    rules: dict[str, Any], value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        mapper(**rules)(rec(value))
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.stage == ("decode" if error is DecodeError else "transform")


def test_a_value_beyond_64_bits_is_a_mapping_error() -> None:
    # orjson reads 2^64 - 1 as an int; their sum would crash the sink's encoder
    m = mapper(value={"expr": "sum(items)"})
    with pytest.raises(MappingError, match="must be within the 64-bit integer range"):
        m(rec({**T, "items": [2**64 - 1, 1]}))


def test_a_number_beyond_a_double_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not valid JSON: Number out of range"):
        mapper(value={"path": "n"})(rec(b'{"tenant": {"id": "a"}, "n": 1e400}'))


FILTER_DIMS = {"region": {"path": "region", "default": None}, "plan": {"path": "plan"}}


@pytest.mark.parametrize(
    ("filters", "value", "dropped_by"),
    [
        (
            [{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}],
            {"region": "test", "plan": "x"},
            "region EXCLUDE",
        ),
        (
            [{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}],
            {"region": "eu", "plan": "x"},
            None,
        ),
        ([{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}], {"plan": "x"}, None),
        (
            [{"dimension": "plan", "values": ["pro", "team"], "action": "include"}],
            {"plan": "free"},
            "plan INCLUDE",
        ),
        (
            [{"dimension": "plan", "values": ["pro", "team"], "action": "INCLUDE"}],
            {"plan": "team"},
            None,
        ),
        (
            [{"dimension": "region", "values": ["eu"], "action": "INCLUDE", "name": "eu-only"}],
            {"plan": "x"},
            "eu-only",
        ),
        (
            [
                {"dimension": "plan", "values": ["x"], "action": "INCLUDE"},
                {"dimension": "region", "values": ["test"], "action": "EXCLUDE"},
            ],
            {"plan": "x", "region": "test"},
            "region EXCLUDE",
        ),
        ([{"dimension": "plan", "values": [7], "action": "EXCLUDE"}], {"plan": 7}, "plan EXCLUDE"),
    ],
)
def test_filters(
    filters: list[dict[str, Any]], value: dict[str, Any], dropped_by: str | None
) -> None:
    m = mapper(dimensions=FILTER_DIMS, filters=filters)
    out = m.evaluate(rec({**T, **value}))
    if dropped_by is None:
        assert isinstance(out, list) and len(out) == 1
    else:
        assert out == Filtered(dropped_by)
        assert m(rec({**T, **value})) == []


def test_a_filtered_record_is_dropped_before_its_other_fields_are_checked() -> None:
    m = mapper(
        value={"path": "n"},
        dimensions=FILTER_DIMS,
        filters=[{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}],
    )
    assert m(rec({"region": "test", "plan": "x"})) == []  # no customer, no value: still dropped


def test_filtered_records_are_counted_by_rule() -> None:
    from prometheus_client import REGISTRY

    m = mapper(
        dimensions=FILTER_DIMS,
        filters=[{"dimension": "plan", "values": ["x"], "action": "EXCLUDE", "name": "no-x"}],
    )
    labels = {"topic": "usage", "rule": "no-x"}
    before = REGISTRY.get_sample_value("amberflo_connector_records_filtered_total", labels) or 0
    for _ in range(3):
        m(rec({**T, "plan": "x"}))
    m(rec({**T, "plan": "y"}))
    assert (
        REGISTRY.get_sample_value("amberflo_connector_records_filtered_total", labels) == before + 3
    )


_EDGES = [0, 1, -1, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 1.0, -0.0, 2.5]


@settings(max_examples=300, deadline=None)
@given(
    x=st.one_of(
        st.sampled_from([*_EDGES, float("inf"), float("-inf"), float("nan"), True, False, None]),
        st.integers(-(2**65), 2**65),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=3),
        st.lists(st.integers(), max_size=1),
        st.dictionaries(st.text(max_size=1), st.integers(), max_size=1),
    )
)
def test_inline_accepts_agree_with_the_checks(x: Any) -> None:
    """What the compiled code takes inline (``Kind.accept``/``convert``) is exactly what the
    key's check returns, value and type; anything else goes to the check."""
    for kind in (TEXT, DIMENSION, NUMBER, *TIME.values()):
        code = Code()
        field_code(code, "out", "k", Rule(path="v"), kind)
        code.add("return out")
        compiled = code.build("def get(payload):", "get", "test")
        try:
            if x is None:
                raise MappingError("k {path: v}", "found nothing and the rule has no default")
            want: Any = kind.check(x, "k {path: v}")
        except MappingError as exc:
            want = ("error", str(exc))
        try:
            got: Any = compiled({"v": x})
        except MappingError as exc:
            got = ("error", str(exc))
        assert (type(got), repr(got)) == (type(want), repr(want)), kind.check.__name__


_SURE = {"string": st.text(), "int": st.integers(-(2**63), 2**63 - 1)}
_SURE["long"] = _SURE["int"]  # the generated Avro readers read both as a 64-bit varint


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_sure_types_are_taken_whatever_the_value(data: st.DataObject) -> None:
    """A value of a kind's ``sure`` type (a path a writer schema says ends on one is not
    tested: ``avro_fused``) passes the inline test and its check unchanged."""
    for kind in (TEXT, DIMENSION, NUMBER, *TIME.values()):
        for sure in sorted(kind.sure):
            x = data.draw(_SURE[sure])
            assert kind.accept is not None and eval(kind.accept, {"x": x})
            assert kind.check(x, "k") is x


def _reference(value: Any, steps: tuple[str | int, ...]) -> Any:
    """What a path finds, as docs/mappings.md states it."""
    for step in steps:
        if isinstance(step, int):
            if type(value) is not list or not -len(value) <= step < len(value):
                return None
            value = value[step]
        else:
            if type(value) is not dict:
                return None
            value = value.get(step)
    return value


_json_values = st.recursive(
    st.one_of(
        st.none(), st.integers(-3, 3), st.sampled_from(["a", "ab", ""]), st.binary(max_size=2)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "0"]), inner)
    ),
    max_leaves=8,
)
_paths = st.lists(
    st.one_of(st.sampled_from(["a", "b", "0"]), st.integers(-3, 2)), min_size=1, max_size=4
)


@settings(max_examples=300, deadline=None)
@given(value=_json_values, steps=_paths)
def test_compiled_paths_find_what_the_documented_path_does(value: Any, steps: list[Any]) -> None:
    text = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")
    code = Code()
    raw = Kind(lambda v, _f: v)
    field_code(code, "out", "k", Rule(path=text, default=None), raw)
    code.add("return out")
    assert code.build("def get(payload):", "get", "test")(value) == _reference(value, tuple(steps))
