"""The Avro decoders: what they read, and each failure typed by whose fault it is.  Writer
schemas come from confluent-kafka's ``mock://`` registry here; the real HTTP registry is in
tests/integration/test_avro.py."""

from __future__ import annotations

import io
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from connector.embedded import free_port
from connector.errors import ConfigError, DecodeError, FatalError, RetryableError
from connector.formats import avro
from connector.formats.avro import ConfluentAvro, WriterSchemas, plain
from connector.records import SourceRecord
from connector.settings import Settings, load_settings

AVSC = Path(__file__).resolve().parents[2] / "schemas" / "usage_event.avsc"
SCHEMA = json.loads(AVSC.read_text())
EVENT = {
    "customerId": "c1",
    "meterApiName": "api-calls",
    "meterValue": 2.5,
    "meterTimeInMillis": 1_700_000_000_123,
    "dimensions": {"region": "eu"},
    "uniqueId": None,
}


def body(event: dict[str, Any], schema: Any = SCHEMA) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), event)
    return buf.getvalue()


def wire(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + payload


def rec(value: bytes | None) -> SourceRecord:
    return SourceRecord("t", 0, 1, 1_700_000_000_000, None, value, ())


class Counting:
    """A registry client that counts fetches and may fail them."""

    def __init__(self, inner: Any, fail: Exception | None = None) -> None:
        self.inner = inner
        self.fail = fail
        self.calls = 0

    def get_schema(self, schema_id: int) -> Any:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.inner.get_schema(schema_id)

    def get_version(self, subject: str, version: int) -> Any:
        return self.inner.get_version(subject, version)


@pytest.fixture
def registry() -> Any:
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


def decoder_of(client: Any) -> ConfluentAvro:
    return ConfluentAvro(WriterSchemas(client, "http://registry.test"))


def test_reads_each_version_with_its_own_schema(registry: Any) -> None:
    v1 = registry.register_schema("u-value", Schema(json.dumps(SCHEMA), "AVRO"))
    v2_schema = {**SCHEMA, "fields": [*SCHEMA["fields"], {"name": "plan", "type": "string"}]}
    v2 = registry.register_schema("u-value", Schema(json.dumps(v2_schema), "AVRO"))
    counting = Counting(registry)
    decode = decoder_of(counting)
    assert decode(rec(wire(v1, body(EVENT)))) == EVENT  # timestamp-millis: plain epoch ms
    assert decode(rec(wire(v2, body(EVENT | {"plan": "pro"}, v2_schema)))) == EVENT | {
        "plan": "pro"
    }
    for _ in range(3):
        decode(rec(wire(v1, body(EVENT))))
    assert counting.calls == 2  # one fetch per schema id


def test_references_and_uuid_as_text(registry: Any) -> None:
    region = {
        "type": "record",
        "name": "Region",
        "namespace": "ex",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        ],
    }
    registry.register_schema("ex.Region", Schema(json.dumps(region), "AVRO"))
    outer = {
        "type": "record",
        "name": "U",
        "namespace": "ex",
        "fields": [{"name": "region", "type": "ex.Region"}],
    }
    from confluent_kafka.schema_registry import SchemaReference

    sid = registry.register_schema(
        "o-value", Schema(json.dumps(outer), "AVRO", [SchemaReference("ex.Region", "ex.Region", 1)])
    )
    named: dict[str, Any] = {}
    fastavro.parse_schema(region, named_schemas=named)
    value = {"region": {"name": "eu", "id": "0f0e0d0c-0b0a-4908-8706-050403020100"}}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(outer, named_schemas=named), value)
    assert decoder_of(registry)(rec(wire(sid, buf.getvalue()))) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"", "first byte is missing"),
        (b'{"customerId": "c1"}', "first byte is 7b, not the magic byte 00"),
        (b"\x00\x00\x01", "shorter than the 5-byte header"),
        ("truncated", "does not decode with schema id"),
        ("trailing", r"1 byte\(s\) left over"),
        ("corrupt", "does not decode with schema id"),
        ("unknown", "schema id 4242 is unknown to the Schema Registry"),
    ],
)
def test_bad_records_are_decode_errors_naming_the_reason(
    registry: Any, value: bytes | str | None, reason: str
) -> None:
    sid = registry.register_schema("u-value", Schema(json.dumps(SCHEMA), "AVRO"))
    good = wire(sid, body(EVENT))
    raw = (
        {
            "truncated": good[:-3],
            "trailing": good + b"\x00",
            "corrupt": good[:5] + b"\x02\xff\xfe" + good[8:],
            "unknown": wire(4242, body(EVENT)),
        }.get(value, value)
        if isinstance(value, str)
        else value
    )
    with pytest.raises(DecodeError, match=reason) as info:
        decoder_of(registry)(rec(raw))  # type: ignore[arg-type]
    assert info.value.stage == "decode"


def test_unknown_id_is_remembered(registry: Any) -> None:
    counting = Counting(registry)
    decode = decoder_of(counting)
    for _ in range(3):
        with pytest.raises(DecodeError, match="unknown"):
            decode(rec(wire(77, b"")))
    assert counting.calls == 1


def sr_error(status: int) -> Exception:
    from confluent_kafka.schema_registry import SchemaRegistryError

    return SchemaRegistryError(status, status * 100, "boom")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, RetryableError),
        (503, RetryableError),
        (429, RetryableError),
        (401, FatalError),
        (403, FatalError),
        (422, RetryableError),
    ],
)
def test_registry_answers_are_not_the_records_fault(
    registry: Any, status: int, kind: type[Exception]
) -> None:
    decode = decoder_of(Counting(registry, sr_error(status)))
    with pytest.raises(kind) as info:
        decode(rec(wire(1, body(EVENT))))
    assert not isinstance(info.value, DecodeError)
    assert "http://registry.test" in str(info.value)


def test_unreachable_registry_is_retryable_and_fails_fast_meanwhile() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = SchemaRegistryClient(avro.registry_config(settings(url).schema_registry))
    counting = Counting(client)
    decode = decoder_of(counting)
    with pytest.raises(RetryableError, match="unreachable"):
        decode(rec(wire(1, body(EVENT))))
    with pytest.raises(RetryableError, match="unreachable"):
        decode(rec(wire(2, body(EVENT))))
    assert counting.calls == 1  # the second id waited for no timeout of its own


def settings(url: str | None = None, **registry: Any) -> Settings:
    return Settings(
        kafka={"topics": ["t"]},
        amberflo={"api_key": "k"},
        schema_registry={"url": url, **registry},
    )


def test_registry_config_from_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    conf = avro.registry_config(
        settings(
            "https://sr:8081", username="key", password="s3cret", ssl_ca_location=ca
        ).schema_registry
    )
    assert conf == {
        "url": "https://sr:8081",
        "timeout": 10.0,
        "max.retries": 0,
        "basic.auth.user.info": "key:s3cret",
        "ssl.ca.location": str(ca),
    }
    with pytest.raises(ConfigError, match="CONNECTOR_SCHEMA_REGISTRY__URL: is required"):
        avro.registry_config(settings().schema_registry)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"URL": "sr:8081"}, "CONNECTOR_SCHEMA_REGISTRY__URL: must start with http"),
        ({"USERNAME": "u"}, "CONNECTOR_SCHEMA_REGISTRY: username and password go together"),
        ({"SSL_CA_LOCATION": "/nope.pem"}, "CONNECTOR_SCHEMA_REGISTRY__SSL_CA_LOCATION: file"),
    ],
)
def test_bad_registry_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    monkeypatch.setenv("CONNECTOR_KAFKA__TOPICS", "t")
    monkeypatch.setenv("CONNECTOR_AMBERFLO__API_KEY", "k")
    for k, v in env.items():
        monkeypatch.setenv(f"CONNECTOR_SCHEMA_REGISTRY__{k}", v)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(line)
    assert len(str(info.value).splitlines()) == 1


def mapped(fmt: str, **extra: Any) -> Settings:
    mapping = {
        "topics": ["t"],
        "format": fmt,
        "customer_id": {"path": "customerId"},
        "meter": {"path": "meterApiName"},
        **extra,
    }
    return Settings(kafka={"topics": ["t"]}, amberflo={"api_key": "k"}, mappings=[mapping])


def test_schemaless_reads_plain_bodies_with_the_local_schema() -> None:
    s = mapped("avro-schemaless", schema=str(AVSC))
    decode = avro.schemaless_decoder(s.mappings[0], s)
    assert decode(rec(body(EVENT))) == EVENT
    with pytest.raises(DecodeError, match="left over"):
        decode(rec(body(EVENT) + b"\x00"))
    with pytest.raises(DecodeError, match=r"does not decode with schema usage_event\.avsc"):
        decode(rec(body(EVENT)[:-4]))


def test_schemaless_needs_a_usable_schema(tmp_path: Path) -> None:
    s = mapped("avro-schemaless")
    with pytest.raises(ConfigError, match=r"mappings\[0\].schema: format avro-schemaless needs"):
        avro.schemaless_decoder(s.mappings[0], s)
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "record", "name": "x", "fields": [{"name": "a", "type": "Nope"}]}')
    s = mapped("avro-schemaless", schema=str(bad))
    with pytest.raises(ConfigError, match=r"mappings\[0\].schema: .*bad.avsc is not a usable"):
        avro.schemaless_decoder(s.mappings[0], s)


def test_avro_without_a_registry_url_stops_at_start() -> None:
    s = mapped("avro")
    with pytest.raises(ConfigError, match="CONNECTOR_SCHEMA_REGISTRY__URL: is required"):
        avro.decoder(s.mappings[0], s)


def test_plain_drops_only_the_logical_types_read_as_plain_values() -> None:
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "a", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "b", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
            {"name": "c", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
    out = plain(schema)
    assert [f["type"] for f in out["fields"]] == [
        {"type": "long"},
        ["null", {"type": "string"}],
        {"type": "long", "logicalType": "timestamp-micros"},
    ]


def test_credentials_in_the_url_are_never_shown() -> None:
    assert avro.shown("https://key:secret@sr.example.com:8081") == "https://***@sr.example.com:8081"
    assert avro.shown("http://a:1@x:1,http://b:2@y:2") == "http://***@x:1,http://***@y:2"
    s = mapped("avro")
    s = s.model_copy(update={"schema_registry": settings(f"http://k:s3cret@127.0.0.1:{free_port()}")
                             .schema_registry})  # fmt: skip
    decoder = avro.decoder(s.mappings[0], s)
    with pytest.raises(RetryableError) as info:
        decoder(rec(wire(1, body(EVENT))))
    assert "s3cret" not in str(info.value) and "http://***@127.0.0.1:" in str(info.value)
