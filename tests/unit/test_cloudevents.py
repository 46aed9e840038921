"""The cloudevents format: both content modes, the default uniqueId and time, the errors, and
the fast paths agreeing with the general decoding."""

import base64
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import DecodeError, MappingError
from connector.formats import Mappers, cloudevents
from connector.formats.config import Mapping
from connector.records import SourceRecord
from connector.settings import Settings

NS = uuid.UUID("6f1c2a5e-0d7b-4c1e-9a55-3f0b7f2d9c11")
RULES = {"format": "cloudevents", "customer_id": {"path": "tenant"}, "meter": "api"}
JSON_CT = ("content-type", b"application/cloudevents+json")


def mapper(**over: Any) -> Any:
    s = Settings(
        kafka={"topics": ["ce"]},
        amberflo={"api_key": "k"},
        transform={"unique_id_namespace": str(NS)},
        mappings=[{"topics": ["ce"], **RULES, **over}],
    )
    return Mappers(s).for_topic("ce")


def event(**over: Any) -> dict[str, Any]:
    e = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/gw",
        "type": "com.acme.api",
        "time": "2026-01-01T00:00:01.5Z",
        "data": {"tenant": "acme"},
    }
    e.update(over)
    return {k: v for k, v in e.items() if v is not None}


def rec(value: Any, headers: tuple[tuple[str, bytes | None], ...] = (), offset: int = 3) -> Any:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return SourceRecord("ce", 0, offset, 1_700_000_000_000, None, raw, headers)


def binary(data: Any = None, **attrs: bytes) -> Any:
    headers = {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-1",
        "ce_source": b"/gw",
        "ce_type": b"com.acme.api",
        "ce_time": b"2026-01-01T00:00:01.5Z",
        "content-type": b"application/json",
        **attrs,
    }
    return rec(
        orjson.dumps({"tenant": "acme"} if data is None else data),
        tuple((k, v) for k, v in headers.items() if v != b"-"),
    )


EXPECTED = {
    "customerId": "acme",
    "meterApiName": "api",
    "meterValue": 1,
    "meterTimeInMillis": 1_767_225_601_500,
    # UUID v5 of cloudevents:["/gw","evt-1"]/api in NS; never update this literal
    "uniqueId": "79ab61ec-3ef1-59ab-b2e4-a1605e92a761",
}


@pytest.mark.parametrize(
    "record",
    [
        rec(event()),
        rec(event(), (JSON_CT,)),
        rec(event(), (("Content-Type", b"application/cloudevents+json; charset=utf-8"),)),
        rec(event(data=None, data_base64=base64.b64encode(b'{"tenant": "acme"}').decode())),
        binary(),
        binary(**{"content-type": b"-"}),  # no content type: JSON assumed
        binary(**{"content-type": b"application/vnd.acme+json"}),
        rec(event(), offset=99),  # re-published: the same uniqueId
    ],
    ids=[
        "structured",
        "with content-type",
        "charset",
        "data_base64",
        "binary",
        "binary no ct",
        "+json",
        "again",
    ],
)
def test_both_modes_give_the_same_event(record: Any) -> None:
    assert [e.payload() for e in mapper()(record)] == [EXPECTED]


def test_the_identity_is_source_and_id() -> None:
    assert EXPECTED["uniqueId"] == str(uuid.uuid5(NS, 'cloudevents:["/gw","evt-1"]/api'))
    other = mapper()(rec(event(source="/other")))[0]
    assert other.unique_id != EXPECTED["uniqueId"]


def test_rules_override_the_event_defaults() -> None:
    m = mapper(unique_id={"path": "rid"}, time={"path": "at", "unit": "s"})
    [e] = m(rec(event(data={"tenant": "acme", "rid": "r-9", "at": 1_767_225_600})))
    assert e.unique_id == "r-9" and e.time_ms == 1_767_225_600_000


def test_no_time_attribute_falls_back_to_the_kafka_timestamp() -> None:
    [e] = mapper()(rec(event(time=None)))
    assert e.time_ms == 1_700_000_000_000


BAD = [
    (rec(event(id=None)), "not a CloudEvent: attribute 'id' is missing or empty"),
    (rec(event(source="")), "not a CloudEvent: attribute 'source' is missing or empty"),
    (rec(event(type=None)), "not a CloudEvent: attribute 'type' is missing or empty"),
    (rec(event(specversion="0.3")), "not a CloudEvent 1.0: specversion is '0.3'"),
    (rec(event(time="yesterday")), "CloudEvent time: is not an ISO-8601 time ('yesterday')"),
    (rec(event(time=5)), "CloudEvent time: must be an ISO-8601 time (got int 5)"),
    (rec([1, 2]), "not a CloudEvent: the value is not a JSON object"),
    (rec(b"{"), "structured CloudEvent is not valid JSON"),
    (rec(None), "record has no value (tombstone)"),
    (rec(event(data_base64="***")), "CloudEvent data_base64 is not valid base64"),
    (
        rec(event(), (("content-type", b"application/cloudevents-batch+json"),)),
        "CloudEvents event format 'application/cloudevents-batch+json' is not supported",
    ),
    (binary(**{"ce_id": b"-"}), "not a CloudEvent: attribute 'id' is missing or empty"),
    (binary(**{"content-type": b"text/plain"}), "CloudEvent data is 'text/plain'; the rules read"),
    (
        rec(
            b"{",
            (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t")),
        ),
        "CloudEvent data is not valid JSON",
    ),
]


@pytest.mark.parametrize(("record", "message"), BAD, ids=[b[1][:40] for b in BAD])
def test_an_invalid_event_is_a_decode_error(record: Any, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        mapper()(record)
    assert str(info.value).startswith(message), str(info.value)


def _general(record: Any) -> Any:
    try:
        return cloudevents._general(record, True, True)
    except DecodeError as exc:
        return ("error", str(exc))


def _fast(record: Any) -> Any:
    decode = cloudevents.decoder(Mapping(topics=["ce"], **RULES), None)  # type: ignore[arg-type]
    try:
        return decode(record)
    except DecodeError as exc:
        return ("error", str(exc))


ints = st.integers(-(2**63), 2**64 - 1)
attribute = st.one_of(st.none(), st.text(max_size=4), st.integers(-2, 2))
times = st.one_of(st.none(), st.sampled_from(["2026-01-01T00:00:00Z", "x", "1969-01-01T00:00:00Z"]))


@settings(max_examples=300, deadline=None)
@given(
    spec=st.one_of(st.just("1.0"), attribute),
    eid=attribute,
    source=attribute,
    kind=attribute,
    time=times,
    data=st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**64 - 1), max_size=2),
    ),
    b64=st.booleans(),
    mode=st.sampled_from(["structured", "structured-ct", "binary"]),
)
def test_the_fast_paths_agree_with_the_general_decoding(
    spec: Any, eid: Any, source: Any, kind: Any, time: Any, data: Any, b64: bool, mode: str
) -> None:
    if mode == "binary":
        attrs = {
            "ce_specversion": spec,
            "ce_id": eid,
            "ce_source": source,
            "ce_type": kind,
            "ce_time": time,
        }
        headers = tuple((k, str(v).encode()) for k, v in attrs.items() if v is not None)
        record = rec(orjson.dumps(data), (*headers, ("content-type", b"application/json")))
    else:
        doc = {"specversion": spec, "id": eid, "source": source, "type": kind, "time": time}
        doc = {k: v for k, v in doc.items() if v is not None}
        if b64:
            doc["data_base64"] = base64.b64encode(orjson.dumps(data)).decode()
        else:
            doc["data"] = data
        record = rec(doc, (JSON_CT,) if mode == "structured-ct" else ())
    assert _fast(record) == _general(record)


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_integer_beyond_64_bits_is_refused_not_made_a_float(mode: str) -> None:
    data = b'{"tenant": "acme", "n": 18446744073709551616}'
    if mode == "binary":
        record = binary()._replace(value=data)
    else:
        record = rec(orjson.dumps(event(data=None))[:-1] + b', "data": ' + data + b"}")
    with pytest.raises(MappingError, match="64-bit integer range"):
        mapper(value={"path": "n"})(record)
