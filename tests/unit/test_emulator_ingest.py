"""Decoding, validation, values expansion, dedupe keys and filtering of /ingest bodies."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.emulator.ingest import (
    MAX_BYTES,
    MAX_EVENTS,
    IngestRejected,
    compile_rules,
    decompress,
    parse_events,
    prepare,
    problems,
)

T = 1_700_000_000_000


def event(**overrides: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "customerId": "c1",
        "meterApiName": "calls",
        "meterValue": 1,
        "meterTimeInMillis": T,
        "uniqueId": "u1",
        "dimensions": {"region": "eu", "tier": "gold"},
    }
    ev.update(overrides)
    return {k: v for k, v in ev.items() if v is not ...}


def key(ev: dict[str, Any]) -> bytes:
    (row,) = prepare([ev], {}).rows
    return row[0]


class TestDecode:
    def test_plain_gzip_sniffed_gzip_and_deflate(self) -> None:
        raw = b'{"a": 1}'
        assert decompress(raw, None) == raw
        assert decompress(gzip.compress(raw), "gzip") == raw
        assert decompress(gzip.compress(raw), "x-gzip") == raw
        assert decompress(gzip.compress(raw), None) == raw  # magic bytes, no header
        assert decompress(zlib.compress(raw), "deflate") == raw

    def test_too_large_decompressed(self) -> None:
        bomb = gzip.compress(b" " * (MAX_BYTES + 1))
        with pytest.raises(IngestRejected) as err:
            decompress(bomb, "gzip")
        assert err.value.status == 413
        with pytest.raises(IngestRejected) as err:
            decompress(b" " * (MAX_BYTES + 1), None)
        assert err.value.status == 413

    @pytest.mark.parametrize(
        ("body", "encoding", "status"),
        [
            (b"not gzip", "gzip", 400),
            (gzip.compress(b"[1, 2, 3]", mtime=0)[:-12], "gzip", 400),
            (b"[]", "br", 415),
        ],
    )
    def test_undecodable(self, body: bytes, encoding: str, status: int) -> None:
        with pytest.raises(IngestRejected) as err:
            decompress(body, encoding)
        assert err.value.status == status

    def test_object_array_and_ndjson(self) -> None:
        assert parse_events(b'{"a": 1}') == [{"a": 1}]
        assert parse_events(b'[{"a": 1}, {"b": 2}]') == [{"a": 1}, {"b": 2}]
        assert parse_events(b'{"a": 1}\n\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]

    def test_ndjson_with_a_bad_line_names_it(self) -> None:
        with pytest.raises(IngestRejected) as err:
            parse_events(b'{"a": 1}\n{"b": \n{"c": 3}')
        assert err.value.status == 400
        assert [d["index"] for d in err.value.body["details"]] == [1]

    @pytest.mark.parametrize("body", [b"", b"42", b'"text"', b"{oops"])
    def test_not_events(self, body: bytes) -> None:
        with pytest.raises(IngestRejected) as err:
            parse_events(body)
        assert err.value.status == 400
        assert err.value.body["code"] == "BAD_REQUEST"

    def test_too_many_events(self) -> None:
        assert len(parse_events(orjson.dumps([{}] * MAX_EVENTS))) == MAX_EVENTS
        with pytest.raises(IngestRejected) as err:
            parse_events(orjson.dumps([{}] * (MAX_EVENTS + 1)))
        assert err.value.status == 413


class TestValidation:
    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"customerId": ""}, "customerId"),
            ({"customerId": ...}, "customerId"),
            ({"customerId": 7}, "customerId"),
            ({"meterApiName": ""}, "meterApiName"),
            ({"meterApiName": ...}, "meterApiName"),
            ({"meterValue": "1"}, "meterValue"),
            ({"meterValue": True}, "meterValue"),
            ({"meterValue": float("nan")}, "meterValue"),
            ({"meterValue": ...}, "meterValue"),
            ({"meterTimeInMillis": 0}, "meterTimeInMillis"),
            ({"meterTimeInMillis": -1}, "meterTimeInMillis"),
            ({"meterTimeInMillis": 1.5e12}, "meterTimeInMillis"),
            ({"meterTimeInMillis": "1700000000000"}, "meterTimeInMillis"),
            ({"meterTimeInMillis": 2**63}, "meterTimeInMillis"),
            ({"uniqueId": 5}, "uniqueId"),
            ({"dimensions": ["a"]}, "dimensions"),
            ({"dimensions": {"region": 1}}, "dimensions.region"),
            ({"values": {}}, "values"),
            ({"values": {"a": "1"}}, "values.a"),
            ({"values": []}, "values"),
        ],
    )
    def test_each_rule(self, overrides: dict[str, Any], field: str) -> None:
        with pytest.raises(IngestRejected) as err:
            prepare([event(), event(**overrides)], {})
        body = err.value.body
        assert err.value.status == 400 and body["code"] == "BAD_REQUEST"
        assert {(d["index"], d["field"]) for d in body["details"]} >= {(1, field)}
        assert all(d["index"] == 1 and d["problem"] for d in body["details"])

    def test_every_bad_event_is_listed(self) -> None:
        events = [event(), "nope", event(customerId=""), event(), event(meterTimeInMillis=0)]
        with pytest.raises(IngestRejected) as err:
            prepare(events, {})
        assert sorted({d["index"] for d in err.value.body["details"]}) == [1, 2, 4]
        assert err.value.body["details"][0] == {
            "index": 1,
            "field": None,
            "problem": "must be a JSON object",
        }

    def test_unknown_keys_and_nulls_are_fine(self) -> None:
        rows = prepare([event(uniqueId=None, dimensions=None, extra={"x": 1})], {}).rows
        assert len(rows) == 1
        assert rows[0][5] is None and rows[0][6] is None

    def test_negative_and_float_values(self) -> None:
        rows = prepare([event(meterValue=-2.5), event(meterValue=3, uniqueId="u2")], {}).rows
        assert [r[3] for r in rows] == [-2.5, 3.0]


class TestValuesExpansion:
    def test_one_record_per_meter(self) -> None:
        ev = event(meterApiName=..., meterValue=..., values={"calls": 2, "bytes": 512.5})
        prepared = prepare([ev], {})
        rows = sorted(prepared.rows, key=lambda r: r[2])
        assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
            ("c1", "bytes", 512.5, T),
            ("c1", "calls", 2.0, T),
        ]
        assert prepared.acknowledged == 2

    def test_values_win_over_meter_api_name(self) -> None:
        rows = prepare([event(values={"other": 4})], {}).rows
        assert [(r[2], r[3]) for r in rows] == [("other", 4.0)]


class TestDedupeKey:
    def test_identical_records_share_a_key(self) -> None:
        assert key(event()) == key(event())
        assert key(event(meterValue=1)) == key(event(meterValue=1.0))
        assert key(event(dimensions={"tier": "gold", "region": "eu"})) == key(event())
        assert key(event(dimensions={})) == key(event(dimensions=None))

    @pytest.mark.parametrize(
        "change",
        [
            {"uniqueId": "u2"},
            {"uniqueId": ...},
            {"meterApiName": "other"},
            {"customerId": "c2"},
            {"meterValue": 2},
            {"meterTimeInMillis": T + 1},
            {"dimensions": {"region": "us", "tier": "gold"}},
            {"dimensions": {"region": "eu"}},
        ],
    )
    def test_any_attribute_different_makes_a_new_record(self, change: dict[str, Any]) -> None:
        assert key(event(**change)) != key(event())

    def test_key_starts_with_the_time(self) -> None:
        assert key(event())[:8] == T.to_bytes(8, "big")
        assert key(event(meterTimeInMillis=T - 1)) < key(event())


class TestFilteringRules:
    RULES = compile_rules(
        [
            {
                "meterApiName": "calls",
                "dimensionName": "region",
                "dimensionValues": ["eu"],
                "action": "INCLUDE",
            },
            {
                "meterApiName": "calls",
                "dimensionName": "tier",
                "dimensionValues": ["free"],
                "action": "exclude",
            },
        ]
    )

    def test_include_and_exclude(self) -> None:
        events = [
            event(uniqueId="kept"),
            event(uniqueId="us", dimensions={"region": "us", "tier": "gold"}),
            event(uniqueId="free", dimensions={"region": "eu", "tier": "free"}),
            event(uniqueId="no-dims", dimensions=None),
            event(uniqueId="other-meter", meterApiName="bytes", dimensions=None),
        ]
        prepared = prepare(events, self.RULES)
        assert [r[5] for r in prepared.rows] == ["kept", "other-meter"]
        assert prepared.filtered == 3
        assert prepared.acknowledged == 5


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
field_values = json_scalars | st.dictionaries(st.text(max_size=3), json_scalars, max_size=3)


@st.composite
def arbitrary_events(draw: st.DrawFn) -> Any:
    base = event()
    for name in ["customerId", "meterApiName", "meterValue", "meterTimeInMillis", "uniqueId"]:
        if draw(st.booleans()):
            base[name] = draw(field_values)
        if draw(st.integers(0, 9)) == 0:
            del base[name]
    if draw(st.booleans()):
        base["dimensions"] = draw(field_values)
    if draw(st.integers(0, 3)) == 0:
        base["values"] = draw(field_values)
    return draw(st.sampled_from([base, base, base, [base], "x"]))


@settings(max_examples=400, deadline=None)
@given(arbitrary_events())
def test_fast_path_and_explanations_agree(ev: Any) -> None:
    """An event is rejected by prepare() exactly when problems() finds something wrong."""
    found = problems(0, ev)
    try:
        prepare([ev], {})
    except IngestRejected as exc:
        assert found, f"rejected without a problem: {ev!r}"
        assert exc.body["details"] == found
    else:
        assert not found, f"accepted despite {found}"
