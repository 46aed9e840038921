"""Avro decoders: ``avro`` (Confluent wire format, writer schemas from a Schema Registry) and
``avro-schemaless`` (plain Avro bodies written with one local ``.avsc``).

Both give the rules a record as fastavro reads it (``dict``, ``list``, ``str``, ``int``,
``float``, ``bytes``, ``None``), with two types made plain when the schema is parsed (no cost
per record): ``timestamp-millis`` / ``local-timestamp-millis`` fields are epoch milliseconds
(``time: {path: …, unit: ms}`` reads them) and ``uuid`` fields are text.  Other logical types
keep fastavro's Python objects (``datetime`` for ``timestamp-micros``, ``Decimal``, ``date``),
which the rules do not read: such a path is a MappingError naming it.

``avro``: a value is magic byte 0, a 4-byte big-endian schema id, then the body.  The writer
schema of each id is fetched once (``SchemaRegistryClient``, with the references it names),
parsed, and kept; records written with any version of a subject are read with their own
schema, so the rules see each version's fields (``default`` covers a field a version lacks).
Each schema is parsed by fastavro and read by code written for it once (``avro_code``: 1.9×
fastavro's generic ``schemaless_reader``, which stays for schemas with other logical types),
not by Confluent's ``AvroDeserializer``, 5× slower than fastavro (BENCHMARKS.md).  A mapping
whose rules only read paths is not given the decoded dicts: ``fuse`` gives ``Rules.bind`` a
mapper that reads the paths straight from the body (``avro_fused``), with the same errors.

What goes wrong, by whose fault it is:

* the record's (→ ``DecodeError``, dead-lettered at stage ``decode``): a tombstone, a wrong
  magic byte, a value shorter than its header, a schema id the registry does not know (404;
  remembered for ``UNKNOWN_ID_TTL_S`` so a stream of them does not hammer the registry), a body
  that does not decode with its schema (truncated, corrupt) or leaves bytes over (written with
  another schema);
* the infrastructure's (→ ``RetryableError``: the worker rewinds and pauses the partition and
  retries with backoff, never dead-letters): a registry that refuses connections, times out,
  answers 5xx / 429 or anything unexpected.  After one such failure further fetches fail fast
  for ``DOWN_FOR_S`` so that a poll with many new ids waits on one timeout, not on each;
* the configuration's (→ ``FatalError``, the connector stops): credentials refused (401/403).
"""

from __future__ import annotations

import io
import json
import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from fastavro import parse_schema, schemaless_reader

from connector.errors import ConfigError, DecodeError, FatalError, RetryableError
from connector.formats.avro_code import Reader, compile_reader
from connector.formats.avro_registry import registry_config, shown
from connector.formats.config import Mapping
from connector.records import SourceRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    from connector.formats.rules import Rules
    from connector.records import MeterEvent

    Mapper = Callable[[SourceRecord], list[MeterEvent]]

    from connector.settings import Settings

log = logging.getLogger("connector.formats.avro")
# The registry client's HTTP library logs every request at INFO: one line per retry per
# partition while the registry is down.  Its warnings and errors still show.
logging.getLogger("httpx2").setLevel(logging.WARNING)
logging.getLogger("httpx").setLevel(logging.WARNING)

UNKNOWN_ID_TTL_S = 300.0
DOWN_FOR_S = 1.0
_PLAIN_LOGICAL = frozenset({"timestamp-millis", "local-timestamp-millis", "uuid"})


def plain(schema: Any) -> Any:
    """``schema`` (parsed JSON) without the logical types the decoders read as plain values."""
    if isinstance(schema, dict):
        out = {k: plain(v) for k, v in schema.items()}
        if out.get("logicalType") in _PLAIN_LOGICAL:
            del out["logicalType"]
        return out
    if isinstance(schema, list):
        return [plain(s) for s in schema]
    return schema


def reader_for(schema: Any, named: dict[str, Any]) -> Reader:
    """The reader of ``schema`` (JSON, its references' named types already in ``named``)."""
    return reader_of(parse_schema(plain(schema), named_schemas=named), named)


def reader_of(parsed: Any, named: dict[str, Any]) -> Reader:
    """The reader of ``parsed`` (fastavro-parsed): generated, or fastavro's."""
    compiled = compile_reader(parsed, named)
    if compiled is not None:
        return compiled

    def generic(data: bytes, start: int) -> tuple[Any, int]:
        fo = io.BytesIO(data)
        fo.seek(start)
        return schemaless_reader(fo, parsed, None), fo.tell()

    return generic


def read_body(data: bytes, start: int, reader: Reader, what: str) -> Any:
    """Decode the Avro body at ``data[start:]``; every byte must be used."""
    try:
        value, end = reader(data, start)
    except Exception as exc:  # any failure to read these bytes is these bytes' fault
        raise _undecodable(exc, what) from exc
    if end != len(data):
        raise _misfit(len(data) - end, what)
    return value


def _undecodable(exc: Exception, what: str) -> DecodeError:
    return DecodeError(f"Avro body does not decode with {what}: {str(exc) or type(exc).__name__}")


def _misfit(left: int, what: str) -> DecodeError:
    """The body is shorter (``left`` < 0: a value cut short) or longer than the schema reads."""
    if left < 0:
        return DecodeError(f"Avro body does not decode with {what}: it ends {-left} byte(s) early")
    return DecodeError(
        f"Avro body does not match {what}: {left} byte(s) left over after the record"
    )


class WriterSchemas:
    """Readers of the writer schemas by id, each fetched from the registry once."""

    def __init__(self, client: SchemaRegistryClient, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryError

        self._client = client
        self._error: type[SchemaRegistryError] = SchemaRegistryError
        self.url = url
        self.readers: dict[int, Reader] = {}
        self.parsed: dict[int, tuple[Any, dict[str, Any]]] = {}
        """id → the parsed writer schema and its named types (``avro_fused``)."""
        self._unknown: dict[int, float] = {}  # id → until when a 404 is remembered
        self._down_until = 0.0
        self._down: RetryableError | None = None

    def get(self, schema_id: int) -> Reader:
        """The reader of ``schema_id`` (raises as the module docstring says)."""
        found = self.readers.get(schema_id)
        if found is not None:
            return found
        now = time.monotonic()
        if self._unknown.get(schema_id, 0.0) > now:
            raise DecodeError(f"schema id {schema_id} is unknown to the Schema Registry")
        if self._down is not None and now < self._down_until:
            raise self._down
        try:
            reader = self._fetch(schema_id)
        except self._error as exc:
            raise self._classify(exc, schema_id) from exc
        except (DecodeError, FatalError):
            raise
        except Exception as exc:  # transport: refused, timeout, TLS, a body that is not JSON
            self._down = RetryableError(
                f"Schema Registry at {self.url} unreachable ({type(exc).__name__}: {exc})"
            )
            self._down_until = time.monotonic() + DOWN_FOR_S
            raise self._down from exc
        self._down = None
        self.readers[schema_id] = reader
        log.info("schema id %d fetched from %s", schema_id, self.url)
        return reader

    def _fetch(self, schema_id: int) -> Reader:
        schema = self._client.get_schema(schema_id)
        if (schema.schema_type or "AVRO") != "AVRO":
            raise DecodeError(f"schema id {schema_id} is a {schema.schema_type} schema, not Avro")
        named: dict[str, Any] = {}
        self._references(schema, named)
        parsed = parse_schema(plain(json.loads(schema.schema_str or "")), named_schemas=named)
        self.parsed[schema_id] = parsed, named
        return reader_of(parsed, named)

    def _references(self, schema: Schema, named: dict[str, Any]) -> None:
        """Parse the schemas ``schema`` references (and theirs) into ``named``."""
        for ref in schema.references or []:
            if ref.subject is None or ref.version is None:
                raise ValueError(
                    f"the registry answered a reference without subject/version: {ref}"
                )
            referenced = self._client.get_version(ref.subject, ref.version).schema
            self._references(referenced, named)
            parse_schema(plain(json.loads(referenced.schema_str or "")), named_schemas=named)

    def _classify(self, exc: Any, schema_id: int) -> Exception:
        status = exc.http_status_code
        detail = f"HTTP {status}, error {exc.error_code}: {exc.error_message}"
        if status == 404:
            self._unknown[schema_id] = time.monotonic() + UNKNOWN_ID_TTL_S
            return DecodeError(
                f"schema id {schema_id} is unknown to the Schema Registry ({detail})"
            )
        if status in (401, 403):
            return FatalError(
                f"the Schema Registry at {self.url} refused the credentials ({detail}); check "
                "CONNECTOR_SCHEMA_REGISTRY__USERNAME / __PASSWORD"
            )
        return RetryableError(f"Schema Registry at {self.url}: {detail}", http_status=status)


class ConfluentAvro:
    """Decoder of the Confluent wire format (see the module docstring)."""

    __slots__ = ("_readers", "_schemas")

    def __init__(self, schemas: WriterSchemas) -> None:
        self._schemas = schemas
        self._readers = schemas.readers

    def __call__(self, record: SourceRecord) -> Any:
        data: Any = record.value  # None (a tombstone) fails the header like a short value
        try:
            magic, schema_id = _HEADER(data)
        except (struct.error, TypeError):
            magic = -1
        if magic:
            raise _bad_header(data)
        reader = self._readers.get(schema_id)
        if reader is None:
            reader = self._schemas.get(schema_id)
        try:
            value, end = reader(data, 5)
        except Exception as exc:  # any failure to read these bytes is these bytes' fault
            raise _undecodable(exc, f"schema id {schema_id}") from exc
        if end != len(data):
            raise _misfit(len(data) - end, f"schema id {schema_id}")
        return value

    def fuse(self, rules: Rules, general: Mapper) -> Mapper:
        """The mapper of ``rules`` (paths only) reading each writer schema's paths straight
        from its generated reader (``avro_fused``; ``rules.Rules.bind``)."""
        from connector.formats import avro_fused

        return avro_fused.confluent(self._schemas, rules, general)


_HEADER = struct.Struct(">BI").unpack_from
"""Magic byte and schema id of the Confluent wire format (struct.error: too short)."""


def _bad_header(data: bytes | None) -> DecodeError:
    if data is None:
        return DecodeError("record has no value (tombstone)")
    if not data or data[0] != 0:
        return DecodeError(
            "not in the Confluent Avro wire format: the first byte is "
            f"{data[:1].hex() or 'missing'}, not the magic byte 00"
        )
    return DecodeError(f"value of {len(data)} byte(s) is shorter than the 5-byte header")


class SchemalessAvro:
    """Decoder of plain Avro bodies written with one local schema."""

    __slots__ = ("_name", "_reader", "_schema")

    def __init__(
        self, reader: Reader, name: str, schema: tuple[Any, dict[str, Any]] | None = None
    ) -> None:
        self._reader = reader
        self._name = name
        self._schema = schema  # parsed, and its named types: what ``fuse`` reads paths by

    def __call__(self, record: SourceRecord) -> Any:
        if record.value is None:
            raise DecodeError("record has no value (tombstone)")
        return read_body(record.value, 0, self._reader, self._name)

    def fuse(self, rules: Rules, general: Mapper) -> Mapper:
        """As ``ConfluentAvro.fuse``, for the one local schema."""
        from connector.formats import avro_fused

        if self._schema is None:
            return general
        return avro_fused.schemaless(*self._schema, self._name, rules, general)


def decoder(mapping: Mapping, settings: Settings) -> ConfluentAvro:
    """Factory of format ``avro`` (``connector.formats.DECODERS``)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    conf = registry_config(settings.schema_registry)
    try:
        client = SchemaRegistryClient(conf)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"CONNECTOR_SCHEMA_REGISTRY: {exc}") from exc
    url = shown(str(conf["url"]))
    return ConfluentAvro(WriterSchemas(client, url))


def schemaless_decoder(mapping: Mapping, settings: Settings) -> SchemalessAvro:
    """Factory of format ``avro-schemaless``: the mapping's ``schema`` file, parsed once."""
    where = f"mappings[{settings.mappings.index(mapping)}].schema"
    path = mapping.schema_file
    if path is None:
        raise ConfigError(
            f"{where}: format avro-schemaless needs the .avsc file it was written with"
        )
    try:
        named: dict[str, Any] = {}
        parsed = parse_schema(
            plain(json.loads(path.read_text(encoding="utf-8"))), named_schemas=named
        )
        reader = reader_of(parsed, named)
    except Exception as exc:  # unreadable, not JSON, or fastavro's SchemaParseException
        raise ConfigError(f"{where}: {path} is not a usable Avro schema: {exc}") from exc
    return SchemalessAvro(reader, f"schema {path.name}", (parsed, named))
