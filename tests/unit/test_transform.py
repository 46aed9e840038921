import json
import uuid
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import RecordError
from connector.formats.ids import ORIGIN_HEADER, UniqueIds
from connector.formats.native import decode_json, map_json, map_native
from connector.records import MeterEvent, SourceRecord
from connector.settings import Settings

NS = uuid.UUID("6f1c2a5e-0d7b-4c1e-9a55-3f0b7f2d9c11")
IDS = UniqueIds(NS)


def rec(
    offset: int = 7,
    topic: str = "usage",
    partition: int = 2,
    ts: int = 1_700_000_000_000,
    headers: tuple[tuple[str, bytes | None], ...] = (),
) -> SourceRecord:
    return SourceRecord(topic, partition, offset, ts, None, b"{}", headers)


def test_derived_id_is_uuid5_of_coordinates_and_meter() -> None:
    assert IDS.derive("usage/2/7", "api-calls") == str(uuid.uuid5(NS, "usage/2/7/api-calls"))


def test_golden_unique_id_never_changes() -> None:
    # Frozen output of the default namespace, since 0.2.0 the same for every group (0.1.x
    # derived it from the group id: 'cfa83b91-4b21-5152-8296-3a9076558162' for the default
    # group). If this changes, every record re-read or replayed after an upgrade counts
    # twice: never update the literals without a version bump and a CHANGELOG Action.
    for group in ("amberflo-connector", "renamed"):
        settings = Settings(
            kafka={"topics": ["usage"], "group_id": group}, amberflo={"api_key": "k"}
        )
        ids = UniqueIds(settings.unique_id_namespace)
        assert ids.at("usage/0/0", "api-calls") == "d3c110f9-f672-5d3b-ad2d-f1dedbed47a6"
        # with a topic id: uuid5(uuid5(namespace, "usage@<topic id>"), "usage/0/0/api-calls")
        with_id = "usage@0b7f1d2e-93c4-4a8e-8f1a-2c6d5e4b3a10/0/0"
        assert ids.at(with_id, "api-calls") == "3410e301-c871-546c-81e9-03c37232241a"
        topic_ns = uuid.uuid5(settings.unique_id_namespace, with_id.split("/")[0])
        assert ids.at(with_id, "api-calls") == str(uuid.uuid5(topic_ns, "usage/0/0/api-calls"))


def test_the_pinned_0_1_namespace_gives_the_0_1_ids() -> None:
    settings = Settings(
        kafka={"topics": ["usage"]},
        amberflo={"api_key": "k"},
        transform={"unique_id_namespace": "amberflo-connector/amberflo-connector"},
    )
    ids = UniqueIds(settings.unique_id_namespace)
    assert ids.at("usage/0/0", "api-calls") == "cfa83b91-4b21-5152-8296-3a9076558162"
    assert ids.of(rec(0, partition=0), "api-calls") == "cfa83b91-4b21-5152-8296-3a9076558162"


def test_the_topic_id_is_part_of_the_coordinates() -> None:
    asked: list[str] = []

    def topic_key(topic: str) -> str:
        asked.append(topic)
        return f"{topic}@0b7f1d2e-93c4-4a8e-8f1a-2c6d5e4b3a10"

    ids = UniqueIds(NS, topic_key)
    assert ids.coordinates(rec()) == "usage@0b7f1d2e-93c4-4a8e-8f1a-2c6d5e4b3a10/2/7"
    assert ids.coordinates(rec(offset=8)) == "usage@0b7f1d2e-93c4-4a8e-8f1a-2c6d5e4b3a10/2/8"
    assert asked == ["usage"]  # once per topic
    value = {"customerId": "c1", "meterApiName": "m"}
    recreated = UniqueIds(NS, lambda t: f"{t}@6a3e0c55-1f2b-4c9d-8e7f-0a1b2c3d4e5f")
    assert map_native(rec(), value, ids) != map_native(rec(), value, recreated)
    replayed = rec(offset=99, headers=((ORIGIN_HEADER, ids.coordinates(rec()).encode()),))
    assert map_native(replayed, value, recreated) == map_native(rec(), value, ids)
    topic_ns = uuid.uuid5(NS, "usage@0b7f1d2e-93c4-4a8e-8f1a-2c6d5e4b3a10")
    assert ids.of(rec(), "m") == str(uuid.uuid5(topic_ns, "usage/2/7/m"))


def test_minimal_record_gets_defaults() -> None:
    [ev] = map_native(rec(), {"customerId": "c1", "meterApiName": "api-calls"}, IDS)
    assert ev == MeterEvent(
        "c1", "api-calls", 1, 1_700_000_000_000, str(uuid.uuid5(NS, "usage/2/7/api-calls"))
    )
    assert ev.payload() == {
        "customerId": "c1",
        "meterApiName": "api-calls",
        "meterValue": 1,
        "meterTimeInMillis": 1_700_000_000_000,
        "uniqueId": ev.unique_id,
    }


def test_same_record_same_events_byte_for_byte() -> None:
    value = {
        "customerId": "c1",
        "meterApiName": "m",
        "meterValue": 2.5,
        "dimensions": {"region": "eu"},
        "values": None,
    }
    assert map_native(rec(), value, IDS) == map_native(rec(), dict(value), IDS)


@pytest.mark.parametrize("other", [rec(offset=8), rec(topic="usage2"), rec(partition=3)])
def test_other_coordinates_other_ids(other: SourceRecord) -> None:
    value = {"customerId": "c1", "meterApiName": "m"}
    assert map_native(rec(), value, IDS)[0].unique_id != map_native(other, value, IDS)[0].unique_id


def test_other_namespace_other_ids() -> None:
    value = {"customerId": "c1", "meterApiName": "m"}
    other = UniqueIds(uuid.uuid4())
    assert (
        map_native(rec(), value, IDS)[0].unique_id != map_native(rec(), value, other)[0].unique_id
    )


def test_given_unique_id_is_kept() -> None:
    [ev] = map_native(rec(), {"customerId": "c", "meterApiName": "m", "uniqueId": "evt-1"}, IDS)
    assert ev.unique_id == "evt-1"


def test_values_expand_with_distinct_ids() -> None:
    events = map_native(rec(), {"customerId": "c", "values": {"a": 1, "b": 2.5}}, IDS)
    assert [(e.meter_api_name, e.meter_value) for e in events] == [("a", 1), ("b", 2.5)]
    assert events[0].unique_id == str(uuid.uuid5(NS, "usage/2/7/a"))
    assert events[1].unique_id == str(uuid.uuid5(NS, "usage/2/7/b"))
    given = map_native(rec(), {"customerId": "c", "uniqueId": "u", "values": {"a": 1, "b": 2}}, IDS)
    assert [e.unique_id for e in given] == ["u:a", "u:b"]


def test_origin_header_wins_for_replayed_records() -> None:
    replayed = rec(offset=99, topic="usage", headers=((ORIGIN_HEADER, b"usage/2/7"),))
    assert IDS.coordinates(replayed) == "usage/2/7"
    value = {"customerId": "c", "meterApiName": "m"}
    assert map_native(replayed, value, IDS) == map_native(rec(), value, IDS)


def test_explicit_time_and_dimensions() -> None:
    [ev] = map_native(
        rec(),
        {
            "customerId": "c",
            "meterApiName": "m",
            "meterTimeInMillis": 5.0,
            "dimensions": {"a": "x"},
        },
        IDS,
    )
    assert ev.time_ms == 5 and isinstance(ev.time_ms, int)
    assert ev.payload()["dimensions"] == {"a": "x"}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([1, 2], "record"),
        ({"meterApiName": "m"}, "customerId"),
        ({"customerId": "", "meterApiName": "m"}, "customerId"),
        ({"customerId": "c"}, "meterApiName"),
        ({"customerId": "c", "meterApiName": "m", "meterValue": "3"}, "meterValue"),
        ({"customerId": "c", "meterApiName": "m", "meterValue": True}, "meterValue"),
        ({"customerId": "c", "meterApiName": "m", "meterTimeInMillis": -1}, "meterTimeInMillis"),
        ({"customerId": "c", "meterApiName": "m", "meterTimeInMillis": "x"}, "meterTimeInMillis"),
        ({"customerId": "c", "meterApiName": "m", "dimensions": {"a": 1}}, "dimensions.a"),
        ({"customerId": "c", "meterApiName": "m", "dimensions": []}, "dimensions"),
        ({"customerId": "c", "meterApiName": "m", "uniqueId": 5}, "uniqueId"),
        ({"customerId": "c", "values": {}}, "values"),
        ({"customerId": "c", "values": {"a": "x"}}, "values.a"),
    ],
)
def test_bad_records_name_field_and_rule(value: object, field: str) -> None:
    with pytest.raises(RecordError) as info:
        map_native(rec(), value, IDS)
    assert info.value.stage == "transform"
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_missing_time_without_kafka_timestamp() -> None:
    with pytest.raises(RecordError, match="meterTimeInMillis"):
        map_native(rec(ts=-1), {"customerId": "c", "meterApiName": "m"}, IDS)


def test_fast_derivation_equals_uuid5_for_many_names() -> None:
    for i in range(2000):
        ns = uuid.uuid5(uuid.NAMESPACE_DNS, str(i))
        name = f"topic-{i}/{i % 7}/{i * 31}"
        assert UniqueIds(ns).derive(name, f"m{i}") == str(uuid.uuid5(ns, f"{name}/m{i}"))


def test_time_beyond_64_bits_is_a_mapping_error_not_a_crash_in_the_sink() -> None:
    # orjson reads the literal as the float 1e25; the event could never be serialised.
    value = decode_json(
        b'{"customerId": "c1", "meterApiName": "m", "meterTimeInMillis": 1' + b"0" * 25 + b"}"
    )
    with pytest.raises(RecordError, match=r"meterTimeInMillis: must be below 2\^64"):
        map_native(rec(), value, IDS)


# -- map_json: the msgspec fast path must be indistinguishable from decode_json + map_native --

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
_FIELD_VALUES = {
    "customerId": st.one_of(_SCALARS, st.sampled_from(["c1", ""])),
    "meterApiName": st.one_of(_SCALARS, st.sampled_from(["api-calls", ""])),
    "meterValue": st.one_of(_SCALARS, st.sampled_from([0, -0.0, 2.5, 2**63, 2**64, 10**30])),
    "meterTimeInMillis": st.one_of(
        _SCALARS, st.sampled_from([1, 0, -5, 1_700_000_000_000, 1.7e12, 1.5, 2**64, 10**25])
    ),
    "dimensions": st.one_of(
        _SCALARS,
        st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), _SCALARS), max_size=3),
    ),
    "uniqueId": st.one_of(_SCALARS, st.sampled_from(["u-1", ""])),
    "values": st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=3), _SCALARS, max_size=2),
        _SCALARS,
    ),
    "extra": _SCALARS,
}


def _outcome(fn: Callable[[], list[MeterEvent]]) -> object:
    """The events as the bytes the sink sends (so 3 and 3.0 differ), or the error."""
    try:
        return orjson.dumps([e.payload() for e in fn()])
    except RecordError as exc:
        return (type(exc).__name__, exc.stage, str(exc))


def _both(value: bytes | None, ts: int = 1_700_000_000_000) -> tuple[object, object]:
    record = rec(ts=ts)._replace(value=value)
    fast = _outcome(lambda: map_json(record, IDS))
    general = _outcome(lambda: map_native(record, decode_json(value), IDS))
    return fast, general


_VALID = {
    "customerId": "c1",
    "meterApiName": "api-calls",
    "meterValue": 3,
    "meterTimeInMillis": 1_700_000_000_123,
    "dimensions": {"region": "eu"},
}


@settings(max_examples=600, deadline=None)
@given(
    st.sets(st.sampled_from(sorted(_VALID))),
    st.fixed_dictionaries({}, optional=_FIELD_VALUES),
    st.sampled_from([1_700_000_000_000, 0, -1]),
)
def test_map_json_equals_the_general_path(
    dropped: set[str], overrides: dict[str, object], ts: int
) -> None:
    # A valid record with some fields dropped and some replaced by values of any type.
    doc = {k: v for k, v in _VALID.items() if k not in dropped} | overrides
    fast, general = _both(json.dumps(doc).encode(), ts)  # json: integers beyond 64 bits too
    assert fast == general


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"customerId": "c1", "meterApiName": "m", "meterValue": 1e400}',
        b'{"customerId": "c1", "meterApiName": "m", "meterValue": 123456789012345678901234567890}',
        b'{"customerId": "c1", "customerId": "c2", "meterApiName": "m"}',
        b'{"customerId": "c1", "meterApiName": "m", "dimensions": {"a": "1", "a": "2"}}',
        b'{"customerId": "c\\u00e9", "meterApiName": "m", "meterValue": 1.0}',
        b'{"customerId": "c1", "meterApiName": "m", "values": {"a": 1, "b": 2.5}}',
        b'{"customerId": "c1", "meterApiName": "m", "meterTimeInMillis": 18446744073709551615}',
        b'{"customerId": "c1", "meterApiName": "m", "meterTimeInMillis": 1' + b"0" * 25 + b"}",
        b'{"customerId": "c1", "meterApiName": "m", "meterValue": -9223372036854775809}',
        b"\xff\xfe",
    ],
)
def test_map_json_equals_the_general_path_on_edge_cases(raw: bytes | None) -> None:
    fast, general = _both(raw)
    assert fast == general


HOSTILE = [
    # (value bytes, error class, message start): dead letters, never a float or a crash
    (
        b'{"customerId": "c", "meterApiName": "m", "meterValue": 18446744073709551616}',
        "MappingError",
        "meterValue: must be within the 64-bit integer range",
    ),
    (
        b'{"customerId": "c", "meterApiName": "m", "meterValue": -9223372036854775809}',
        "MappingError",
        "meterValue: must be within the 64-bit integer range",
    ),
    (
        b'{"customerId": "c", "values": {"a": 1, "b": 99999999999999999999999}}',
        "MappingError",
        "values.b: must be within the 64-bit integer range",
    ),
    (
        b'{"customerId": "c", "meterApiName": "m", "meterValue": 1e400}',
        "DecodeError",
        "not valid JSON",
    ),
    (
        b'{"customerId": "c", "meterApiName": "m", "meterValue": NaN}',
        "DecodeError",
        "not valid JSON",
    ),
    (
        b'{"customerId": "c", "meterApiName": "m", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "DecodeError",
        "not valid JSON",
    ),
    (
        b'{"customerId": "c", "values": {'
        + b",".join(b'"m%d": 1' % i for i in range(5000))
        + b"}}",
        "MappingError",
        "values: has 5000 meters, more than the 1000 events a record may make",
    ),
]


@pytest.mark.parametrize(("raw", "error", "message"), HOSTILE, ids=[h[2][:40] for h in HOSTILE])
def test_hostile_values_are_record_errors_on_both_paths(
    raw: bytes, error: str, message: str
) -> None:
    fast, general = _both(raw)
    assert fast == general
    record = SourceRecord("usage", 0, 1, 1_700_000_000_000, None, raw)
    with pytest.raises(RecordError) as info:
        map_json(record, IDS)
    assert type(info.value).__name__ == error
    assert str(info.value).startswith(message), str(info.value)


def test_max_events_per_record_is_a_setting() -> None:
    raw = b'{"customerId": "c", "values": {"a": 1, "b": 2, "c": 3}}'
    record = SourceRecord("usage", 0, 1, 1_700_000_000_000, None, raw)
    assert len(map_json(record, IDS, max_events=3)) == 3
    with pytest.raises(RecordError, match="more than the 2 events"):
        map_json(record, IDS, max_events=2)
    s = Settings(kafka={"topics": ["t"]}, amberflo={"api_key": "k"})
    assert s.transform.max_events_per_record == 1000


def test_a_multi_megabyte_record_maps_or_fails_by_its_fields_only() -> None:
    big = "x" * (4 * 1024 * 1024)
    raw = orjson.dumps({"customerId": "c", "meterApiName": "m", "junk": big, "meterValue": 2})
    [event] = map_json(SourceRecord("usage", 0, 1, 1_700_000_000_000, None, raw), IDS)
    assert event.meter_value == 2 and "junk" not in event.payload()
