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


READS = ("datacontenttype", "subject", "tenantid", "type")
ATTRIBUTE_RULES = {
    **RULES,
    "customer_id": {"path": "$ce.tenantid", "default": "none"},
    "meter": {"path": "$ce.type"},
    "dimensions": {
        "subject": {"path": "$ce.subject", "default": None},
        "ct": {"path": "$ce.datacontenttype", "default": None},
    },
}


def _general(record: Any, attributes: tuple[str, ...] = ()) -> Any:
    try:
        return cloudevents._general(record, True, True, attributes)
    except DecodeError as exc:
        return ("error", str(exc))


def _fast(record: Any, rules: dict[str, Any] = RULES) -> Any:
    decode = cloudevents.decoder(Mapping(topics=["ce"], **rules), None)  # type: ignore[arg-type]
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
    tenant=attribute,
    data=st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**64 - 1), max_size=2),
    ),
    b64=st.booleans(),
    mode=st.sampled_from(["structured", "structured-ct", "binary"]),
    reads=st.booleans(),
    valid=st.booleans(),
    shout=st.sampled_from([None, "ce_id", "ce_tenantid", "content-type"]),
    again=st.sampled_from([None, "ce_id", "ce_tenantid", "content-type"]),
    again_value=st.sampled_from([b"text/plain", None]),
)
def test_the_fast_paths_agree_with_the_general_decoding(
    spec: Any,
    eid: Any,
    source: Any,
    kind: Any,
    time: Any,
    tenant: Any,
    data: Any,
    b64: bool,
    mode: str,
    reads: bool,
    valid: bool,
    shout: str | None,
    again: str | None,
    again_value: bytes | None,
) -> None:
    """Both fast paths give what the general decoding gives, attributes included, whatever the
    header names' case and repeats (``shout``: the last header of a name upper-cased;
    ``again``: a name repeated with another value or none; ``valid``: the required attributes
    are there, so that the fast paths' own conditions decide)."""
    if valid:
        spec, eid, source, kind = "1.0", "evt-1", "/gw", "t"
    if mode == "binary":
        attrs = {
            "ce_specversion": spec,
            "ce_id": eid,
            "ce_source": source,
            "ce_type": kind,
            "ce_time": time,
            "ce_tenantid": tenant,
        }
        pairs = [(k, str(v).encode()) for k, v in attrs.items() if v is not None]
        pairs.append(("content-type", b"application/json"))
        if again is not None:
            pairs.append((again, again_value))
        last = max((i for i, (k, _v) in enumerate(pairs) if k == shout), default=None)
        if last is not None:
            pairs[last] = (pairs[last][0].upper(), pairs[last][1])
        record = rec(orjson.dumps(data), tuple(pairs))
    else:
        doc = {
            "specversion": spec,
            "id": eid,
            "source": source,
            "type": kind,
            "time": time,
            "tenantid": tenant,
        }
        doc = {k: v for k, v in doc.items() if v is not None}
        if b64:
            doc["data_base64"] = base64.b64encode(orjson.dumps(data)).decode()
        else:
            doc["data"] = data
        record = rec(doc, (JSON_CT,) if mode == "structured-ct" else ())
    if reads:
        assert _fast(record, ATTRIBUTE_RULES) == _general(record, READS)
    else:
        assert _fast(record) == _general(record)


EDGE_HEADERS = [
    (("ce_tenantid", b"acme"), ("ce_tenantid", None)),  # a later header without a value
    (("ce_tenantid", b"acme"), ("CE_TENANTID", b"other")),  # the last one wins, any case
    (("ce_tenantid", "zoë".encode("utf-16")),),  # not UTF-8
    (("ce_tenantid", "zoë".encode()),),
    (("ce_datacontenttype", b"text/plain"),),  # binary mode: content-type is the one
    (("ce_subject", b""),),
    (("ce_id", b"evt-\xff"),),  # not UTF-8: replaced, in the identity too
    (("ce_time", "2026-01-01T00:00:01Z".encode("utf-16")),),
]


@pytest.mark.parametrize("content_type", [b"application/json", b"-"])
@pytest.mark.parametrize("extra", EDGE_HEADERS, ids=[repr(e)[:40] for e in EDGE_HEADERS])
def test_the_binary_fast_path_reads_edge_headers_as_the_general_way(
    extra: Any, content_type: bytes
) -> None:
    record = binary(**{"content-type": content_type})
    record = record._replace(headers=record.headers + extra)
    assert _fast(record, ATTRIBUTE_RULES) == _general(record, READS)


def test_rules_read_context_attributes_in_both_modes() -> None:
    """``$ce.<name>`` reads the event's attributes: extensions, optional ones, and in binary
    mode the ``ce_<name>`` headers as text (``datacontenttype`` is the content-type there)."""
    m = mapper(**ATTRIBUTE_RULES)
    frozen = {
        "customerId": "acme",
        "meterApiName": "com.acme.api",
        "meterValue": 1,
        "meterTimeInMillis": 1_767_225_601_500,
        # UUID v5 of cloudevents:["/gw","evt-1"]/com.acme.api in NS; never update this literal
        "uniqueId": "04fa2fe3-2228-5ec6-8e58-ff6a590f3538",
        "dimensions": {"subject": "orders/7", "ct": "application/json"},
    }
    assert frozen["uniqueId"] == str(uuid.uuid5(NS, 'cloudevents:["/gw","evt-1"]/com.acme.api'))
    structured = event(tenantid="acme", subject="orders/7", datacontenttype="application/json")
    for record in [
        rec(structured),
        rec(structured, (JSON_CT,)),
        binary(ce_tenantid=b"acme", ce_subject=b"orders/7"),
        binary(CE_TENANTID=b"acme", ce_subject=b"orders/7"),  # the general way: any case
    ]:
        assert [e.payload() for e in m(record)] == [frozen]
    # absent attributes take their defaults; an integer extension is a number in structured
    # mode and text in binary mode (headers are text), the same dimension either way
    [e] = m(rec(event()))
    assert e.customer_id == "none" and "dimensions" not in e.payload()
    numbered = mapper(**{**ATTRIBUTE_RULES, "dimensions": {"n": {"path": "$ce.seq"}}})
    assert numbered(rec(event(seq=5)))[0].payload()["dimensions"] == {"n": "5"}
    assert numbered(binary(ce_seq=b"5"))[0].payload()["dimensions"] == {"n": "5"}


def test_a_missing_attribute_without_default_is_a_mapping_error_naming_it() -> None:
    m = mapper(customer_id={"path": "$ce.tenantid"})
    for record in [rec(event()), binary()]:
        with pytest.raises(MappingError) as info:
            m(record)
        assert str(info.value) == (
            "customer_id {path: $ce.tenantid}: found nothing and the rule has no default"
        )


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_integer_beyond_64_bits_is_refused_not_made_a_float(mode: str) -> None:
    data = b'{"tenant": "acme", "n": 18446744073709551616}'
    if mode == "binary":
        record = binary()._replace(value=data)
    else:
        record = rec(orjson.dumps(event(data=None))[:-1] + b', "data": ' + data + b"}")
    with pytest.raises(MappingError, match="64-bit integer range"):
        mapper(value={"path": "n"})(record)
