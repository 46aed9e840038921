"""``format: segment``: golden table of Segment calls → the exact events, customer updates,
skips and errors (the seed destination's examples among them)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from connector import metrics
from connector.errors import DecodeError, MappingError
from connector.formats import Mappers
from connector.formats.rules import Filtered
from connector.formats.segment import SegmentMapper
from connector.records import CustomerUpdate, MeterEvent, SourceRecord
from connector.settings import Settings
from tests.segment_calls import (
    ALIAS,
    GROUP,
    IDENTIFY,
    IDENTIFY_TRAITS,
    MALFORMED,
    PAGE,
    PAGE_DIMENSIONS,
    SCREEN,
    T_MS,
    TRACK,
    identify,
    track,
)

NS = uuid.UUID("6f1c2a5e-0d7b-4c1e-9a55-3f0b7f2d9c11")
KAFKA_TS = 1_700_000_000_000


def mapper(**segment: Any) -> SegmentMapper:
    entry: dict[str, Any] = {"topics": ["seg"], "format": "segment"}
    if segment:
        entry["segment"] = segment
    s = Settings(
        kafka={"topics": ["seg"]},
        amberflo={"api_key": "k"},
        transform={"unique_id_namespace": str(NS)},
        mappings=[entry],
    )
    m = Mappers(s).for_topic("seg")
    assert isinstance(m, SegmentMapper)
    return m


def rec(call: Any, offset: int = 4) -> SourceRecord:
    raw = call if isinstance(call, bytes) or call is None else orjson.dumps(call)
    return SourceRecord("seg", 1, offset, KAFKA_TS, None, raw)


def events(call: Any, **segment: Any) -> list[dict[str, object]]:
    out = mapper(**segment)(rec(call))
    assert isinstance(out, list)
    return [e.payload() for e in out]


def ev(meter: str, value: float, uid: str, dims: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = {
        "customerId": extra.pop("customer", "some_user_id"),
        "meterApiName": meter,
        "meterValue": value,
        "meterTimeInMillis": extra.pop("time", T_MS),
        "uniqueId": uid,
    }
    if dims:
        body["dimensions"] = dims
    return body


def test_track_as_the_seed_shows() -> None:
    assert events(TRACK) == [ev("ApiCalls", 2.0, "msg-track", {"region": "us-west-2"})]


def test_page_and_screen_as_the_seed_shows() -> None:
    assert events(PAGE) == [ev("page", 1, "msg-page", PAGE_DIMENSIONS)]
    expected = ev("screen", 1, "msg-screen", {"name": "Home", "title": "Welcome _ Initech"})
    assert events(SCREEN) == [expected]  # time from sentAt


def test_identify_as_the_seed_shows() -> None:
    update = mapper()(rec(IDENTIFY))
    assert update == CustomerUpdate(
        "some_user_id",
        "John Doe",
        "john.doe@email.com",
        IDENTIFY_TRAITS,
        "premium",
        T_MS // 1000,
    )


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (track("m1", "u", "Signed Up"), [ev("Signed Up", 1, "m1", {}, customer="u")]),
        (  # anonymousId when there is no userId; nested and null properties are no dimensions
            {
                **track("m2", "", "Clicked", {"a": {"b": 1}, "n": None, "ok": True, "x": 1.5}),
                "anonymousId": "anon-1",
            },
            [ev("Clicked", 1, "m2", {"ok": "true", "x": "1.5"}, customer="anon-1")],
        ),
        (  # no timestamp: sentAt; neither: the Kafka timestamp
            {**track("m3", "u", "E"), "timestamp": None},
            [ev("E", 1, "m3", {}, customer="u", time=KAFKA_TS)],
        ),
        (  # no messageId: native's derived uniqueId of the record's coordinates
            {**track("", "u", "E", {"value": 3})},
            [ev("E", 3, str(uuid.uuid5(NS, "seg/1/4/E")), {}, customer="u")],
        ),
    ],
)
def test_track_rules(call: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    assert events(call) == expected


def test_renamed_events_and_several_meters_per_call() -> None:
    renames = {"API Call": "api-calls", "Order Completed": {"orders": None, "revenue": "revenue"}}
    call = track("m", "u", "API Call", {"value": 4, "region": "eu"})
    assert events(call, events=renames) == [ev("api-calls", 4, "m", {"region": "eu"}, customer="u")]
    order = track("o", "u", "Order Completed", {"revenue": 25.5, "currency": "EUR"})
    dims = {"currency": "EUR"}
    assert events(order, events=renames) == [
        ev("orders", 1, "o:orders", dims, customer="u"),
        ev("revenue", 25.5, "o:revenue", dims, customer="u"),
    ]
    no_revenue = track("p", "u", "Order Completed")  # a meter whose property is absent: none
    assert events(no_revenue, events=renames) == [ev("orders", 1, "p:orders", {}, customer="u")]


def test_identify_rules() -> None:
    m = mapper(plan_trait="tier")
    bare = m(rec(identify("i1", "acme", {"tier": "gold", "address": {"city": "Oslo"}})))
    assert bare == CustomerUpdate(
        "acme",
        "acme",  # no traits.name: the id
        None,
        {"tier": "gold", "address": '{"city":"Oslo"}'},
        "gold",
        T_MS // 1000,
    )
    no_plan = mapper(plan_trait=None)(rec(IDENTIFY))
    assert isinstance(no_plan, CustomerUpdate) and no_plan.plan is None
    assert no_plan.traits["plan"] == "premium"  # still a trait


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (GROUP, "segment group"),
        (ALIAS, "segment alias"),
        ({**GROUP, "type": "screenview"}, "segment unknown type"),
        (identify("i", None, {"name": "Anon"}, anonymousId="a"), "segment identify without userId"),
    ],
)
def test_skipped_calls_are_counted_never_dead_lettered(call: dict[str, Any], reason: str) -> None:
    m = mapper()
    assert m.evaluate(rec(call)) == Filtered(reason)
    before = metrics.SKIPPED.labels("seg", reason)._value.get()
    assert m(rec(call)) == []
    assert metrics.SKIPPED.labels("seg", reason)._value.get() - before == 1


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (MALFORMED, MappingError, "userId: missing, and so is anonymousId"),
        (b"not json", DecodeError, "not valid JSON"),
        (None, DecodeError, "tombstone"),
        ([TRACK], MappingError, "call: must be a JSON object (got list)"),
        ({"messageId": "x"}, MappingError, "type: must name the Segment call"),
        ({**TRACK, "event": ""}, MappingError, "event: must be a non-empty string"),
        ({**TRACK, "timestamp": "yesterday"}, MappingError, "timestamp: is not an ISO-8601 time"),
        ({**TRACK, "properties": {"value": "2"}}, MappingError, "properties.value: must be a num"),
        ({**TRACK, "properties": [1]}, MappingError, "properties: must be an object (got list)"),
        (identify("i", "u", ["a"]), MappingError, "traits: must be an object (got list)"),
    ],
)
def test_bad_calls_are_dead_lettered_with_the_reason(
    value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        mapper()(rec(value))
    assert message in str(info.value)


def test_same_record_same_output() -> None:
    m = mapper()
    for call in (TRACK, PAGE, SCREEN, IDENTIFY):
        first, again = m(rec(call)), m(rec(call))
        if isinstance(first, list):
            assert [orjson.dumps(e.payload()) for e in first] == [
                orjson.dumps(e.payload())
                for e in again  # type: ignore[union-attr]
            ]
            assert all(isinstance(e, MeterEvent) for e in first)
        else:
            assert first == again


def test_segment_takes_no_rules() -> None:
    from connector.errors import ConfigError
    from connector.settings import load_settings

    with pytest.raises(ConfigError, match=r"mappings\[0\]: .*format segment maps Segment calls"):
        load_settings(
            kafka={"topics": ["seg"]},
            amberflo={"api_key": "k"},
            mappings=[{"topics": ["seg"], "format": "segment", "meter": "x"}],
        )


def test_mappings_test_cases_can_expect_a_customer_update_or_a_skip() -> None:
    from connector.formats.preview import Case, check, outcome

    s = Settings(
        kafka={"topics": ["seg"]},
        amberflo={"api_key": "k"},
        mappings=[{"topics": ["seg"], "format": "segment"}],
    )
    mappers = Mappers(s)
    got = outcome(mappers, rec(IDENTIFY))
    assert got.to_json()["customer"] == {
        "customerId": "some_user_id",
        "customerName": "John Doe",
        "customerEmail": "john.doe@email.com",
        "traits": IDENTIFY_TRAITS,
        "plan": "premium",
        "planStartTimeInSeconds": T_MS // 1000,
    }
    want = {"customer": {"customerName": "John Doe", "plan": "premium"}}
    assert check(Case("identify", rec(IDENTIFY), want), got) == []
    wrong = {"customer": {"plan": "basic"}}
    assert check(Case("identify", rec(IDENTIFY), wrong), got) == [
        "customer: plan is 'premium', not 'basic'"
    ]
    assert check(Case("track", rec(TRACK), want), outcome(mappers, rec(TRACK)))[0].startswith(
        "expected a customer update, got events"
    )
    skipped = outcome(mappers, rec(GROUP))
    assert check(Case("group", rec(GROUP), {"filtered": "segment group"}), skipped) == []
