"""``schemas/``: the JSON Schema of the native usage event says exactly what the connector
accepts, and the Avro schema of the same event round-trips."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import RecordError
from connector.formats.native import map_json
from connector.records import SourceRecord
from tests.unit.test_transform import _FIELD_VALUES, _VALID, IDS

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
JSON_SCHEMA = json.loads((SCHEMAS / "usage_event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(JSON_SCHEMA)
_INT64_MIN, _UINT64_END = -(1 << 63), 1 << 64


def accepted(raw: bytes) -> bool:
    record = SourceRecord("usage", 0, 1, 1_700_000_000_000, None, raw, ())
    try:
        map_json(record, IDS)
    except RecordError:
        return False
    return True


def _wide_integers(doc: Any) -> bool:
    """An integer literal beyond 64 bits where an amount is read: JSON Schema cannot tell
    ``1e30`` (a float, accepted) from ``1000…0`` (an integer literal), the connector can."""
    amounts = [doc.get("meterValue")]
    if isinstance(doc.get("values"), dict):
        amounts += doc["values"].values()
    return any(type(a) is int and not _INT64_MIN <= a < _UINT64_END for a in amounts)


def test_the_json_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)


@settings(max_examples=300, deadline=None)
@given(
    st.sets(st.sampled_from(sorted(_VALID))),
    st.fixed_dictionaries({}, optional=_FIELD_VALUES),
)
def test_json_schema_accepts_exactly_what_the_connector_accepts(
    dropped: set[str], overrides: dict[str, object]
) -> None:
    # A valid record with some fields dropped and some replaced by values of any type (the
    # same generator as the fast-path property test).
    doc = {k: v for k, v in _VALID.items() if k not in dropped} | overrides
    raw = json.dumps(doc).encode()
    valid = VALIDATOR.is_valid(json.loads(raw))
    if accepted(raw):
        assert valid, f"the connector accepts {doc}, the schema does not"
    elif not _wide_integers(doc):
        assert not valid, f"the schema accepts {doc}, the connector does not"


_M = {"customerId": "c1", "meterApiName": "m"}


@pytest.mark.parametrize(
    "doc",
    [
        _M | {"meterTimeInMillis": 2**64 - 1},
        _M | {"meterTimeInMillis": 2**64},
        _M | {"meterTimeInMillis": 1},
        _M | {"meterTimeInMillis": 0},
        _M | {"meterTimeInMillis": 1.7e12},
        _M | {"meterTimeInMillis": 1.5},
        _M | {"meterTimeInMillis": True},
        _M | {"meterValue": None},
        _M | {"meterValue": False},
        _M | {"meterValue": -1e300},
        _M | {"dimensions": {}},
        _M | {"dimensions": {"a": 1}},
        _M | {"uniqueId": ""},
        _M | {"values": {}},
        _M | {"values": {"": 1}},
        _M | {"values": {"a": "1"}},
        _M | {"values": None, "meterApiName": None},
        {"customerId": "", "meterApiName": "m"},
        {"customerId": "c1", "meterApiName": ""},
        {"customerId": "c1"},
        ["c1"],
    ],
)
def test_json_schema_and_connector_agree_on_edge_cases(doc: Any) -> None:
    assert VALIDATOR.is_valid(doc) == accepted(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "doc",
    [
        {"customerId": "c1", "meterApiName": "api-calls"},
        {"customerId": "c1", "values": {"a": 1, "b": 2.5}, "meterApiName": 7},
        {
            "customerId": "c1",
            "meterApiName": "m",
            "meterValue": 2.5,
            "meterTimeInMillis": 1_700_000_000_000,
            "dimensions": {"region": "eu"},
            "uniqueId": "u-1",
            "anything": ["else"],
        },
    ],
)
def test_documented_examples_validate(doc: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(doc) and accepted(json.dumps(doc).encode())


AVRO_SCHEMA = fastavro.parse_schema(json.loads((SCHEMAS / "usage_event.avsc").read_text()))


@pytest.mark.parametrize(
    "event",
    [
        {"customerId": "c1", "meterApiName": "api-calls"},
        {
            "customerId": "customer-07",
            "meterApiName": "storage-gb-hours",
            "meterValue": 12.25,
            "meterTimeInMillis": 1_700_000_000_123,
            "dimensions": {"region": "eu-west-1", "tier": "pro"},
            "uniqueId": "evt-1",
        },
    ],
)
def test_avro_usage_event_round_trips_and_fills_defaults(event: dict[str, Any]) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, AVRO_SCHEMA, event)
    buf.seek(0)
    back = fastavro.schemaless_reader(buf, AVRO_SCHEMA, None)
    defaults = {"meterValue": 1.0, "meterTimeInMillis": None, "dimensions": {}, "uniqueId": None}
    expected = defaults | event
    if expected["meterTimeInMillis"] is not None:  # timestamp-millis reads back as a datetime
        back["meterTimeInMillis"] = int(back["meterTimeInMillis"].timestamp() * 1000)
    assert back == expected


def test_the_packaged_avro_schema_is_the_one_in_schemas() -> None:
    packaged = Path(__file__).resolve().parents[2] / "connector" / "formats" / "usage_event.avsc"
    assert packaged.read_bytes() == (SCHEMAS / "usage_event.avsc").read_bytes()
