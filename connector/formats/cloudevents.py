"""The ``cloudevents`` format: CloudEvents 1.0 on Kafka, both content modes of the Kafka
protocol binding (github.com/cloudevents/spec, ``kafka-protocol-binding.md``).

* **structured**: the ``content-type`` header is ``application/cloudevents+json`` (parameters
  such as ``; charset=utf-8`` allowed) and the value is the whole event as JSON, its payload in
  ``data`` (or ``data_base64``).  A value without that header and without ``ce_specversion``
  is read the same way, since many producers send structured events without headers.
* **binary**: the attributes are headers (``ce_specversion``, ``ce_id``, ``ce_source``,
  ``ce_type``, ``ce_time``, …), ``content-type`` is the data's content type, and the value
  is the data.

The rules read the event's ``data`` (parsed as JSON: a JSON content type, or none), and the
context attributes their ``{path: $ce.<name>}`` rules name (``Mapping.attributes``): the
structured event's member, or the binary ``ce_<name>`` header as text (``datacontenttype``:
the ``content-type`` header); only those are collected, per record.  The event's ``source``
and ``id``, which CloudEvents says identify it, make the default uniqueId; its ``time``
(RFC 3339) is the default meter time.  A record that is not a valid CloudEvent
(no ``specversion`` 1.0, ``id``, ``source`` or ``type``; a bad ``time``; data that is not
JSON) is a ``DecodeError``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import msgspec
import orjson

from connector.errors import DecodeError, MappingError
from connector.formats.config import Mapping
from connector.formats.fields import iso_ms
from connector.formats.rules import Decoder, Envelope
from connector.records import SourceRecord

if TYPE_CHECKING:
    from connector.settings import Settings

STRUCTURED = "application/cloudevents"
_STRUCTURED_JSON = b"application/cloudevents+json"
_decode_any = msgspec.json.Decoder().decode
REQUIRED = ("id", "source", "type")


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _json(raw: bytes, what: str) -> Any:
    """As ``native.decode_json``: msgspec, so an integer beyond 64 bits stays an int (and is
    refused by name) instead of silently becoming a float."""
    try:
        return _decode_any(raw)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(f"{what} is not valid JSON: nested too deeply") from None


def identity(source: str, event_id: str) -> str:
    """The text a CloudEvent's default uniqueIds derive from (unambiguous: JSON)."""
    return "cloudevents:" + orjson.dumps([source, event_id]).decode()


def _attribute(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if type(value) is not str or not value:
        raise DecodeError(f"not a CloudEvent: attribute {name!r} is missing or empty")
    return value


def _structured(raw: bytes | None, content_type: str | None) -> tuple[dict[str, Any], Any]:
    if content_type is not None and not content_type.lower().startswith(STRUCTURED + "+json"):
        raise DecodeError(
            f"CloudEvents event format {content_type!r} is not supported (only "
            f"{STRUCTURED}+json; the Kafka binding has no batch mode)"
        )
    if raw is None:
        raise DecodeError("record has no value (tombstone)")
    event = _json(raw, "structured CloudEvent")
    if type(event) is not dict:
        raise DecodeError("not a CloudEvent: the value is not a JSON object")
    if "data_base64" in event:
        encoded = event["data_base64"]
        try:
            data_bytes = base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise DecodeError("CloudEvent data_base64 is not valid base64") from None
        if not _is_json(event.get("datacontenttype")):
            raise DecodeError(f"CloudEvent data is {event['datacontenttype']!r}, not JSON")
        return event, _json(data_bytes, "CloudEvent data")
    return event, event.get("data")


def _binary(record: SourceRecord, headers: dict[str, str]) -> tuple[dict[str, Any], Any]:
    event: dict[str, Any] = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
    content_type = event["datacontenttype"] = headers.get("content-type")
    if not _is_json(content_type):
        raise DecodeError(f"CloudEvent data is {content_type!r}; the rules read JSON data")
    raw = record.value
    return event, None if not raw else _json(raw, "CloudEvent data")


def _general(
    record: SourceRecord, want_identity: bool, want_time: bool, attributes: tuple[str, ...] = ()
) -> Envelope:
    """The definition of the decoding (both modes); names what is wrong with a record.

    ``attributes``: the context attributes the rules read, each from the structured event's
    member or the binary ``ce_<name>`` header (as text; ``datacontenttype`` is the
    ``content-type`` header there), None when absent."""
    headers: dict[str, str] = {}
    for k, v in record.headers:
        if v is not None:
            headers[k.lower()] = v.decode("utf-8", "replace")
    if "ce_specversion" in headers:
        event, data = _binary(record, headers)
    else:
        event, data = _structured(record.value, headers.get("content-type"))
    version = event.get("specversion")
    if version != "1.0":
        raise DecodeError(f"not a CloudEvent 1.0: specversion is {version!r}")
    for name in REQUIRED:
        _attribute(event, name)
    return _envelope(
        data,
        event["source"],
        event["id"],
        event.get("time"),
        want_identity,
        want_time,
        {n: event.get(n) for n in attributes} if attributes else None,
    )


def _envelope(
    data: Any,
    source: str,
    event_id: str,
    time: Any,
    want_identity: bool,
    want_time: bool,
    attributes: dict[str, Any] | None = None,
) -> Envelope:
    time_ms = None
    if want_time and time is not None:
        try:
            time_ms = iso_ms(time, "time")
        except MappingError as exc:
            raise DecodeError(f"CloudEvent {exc}") from None
    return Envelope(
        data, identity(source, event_id) if want_identity else None, time_ms, attributes
    )


_Text = Annotated[str, msgspec.Meta(min_length=1)]


class _Event(msgspec.Struct):
    """The common shape of a structured event, checked by msgspec in C while it decodes.
    Anything it refuses (a missing attribute, ``data_base64``, …) goes the general way,
    which stays the definition and names the problem."""

    specversion: Literal["1.0"]
    id: _Text
    source: _Text
    type: _Text
    time: str | None = None
    data: Any = None
    data_base64: None = None


def _event_type(attributes: tuple[str, ...]) -> type[_Event]:
    """``_Event`` with a field for each other attribute the rules read (any JSON value)."""
    extra = [(n, Any, None) for n in attributes if n not in _Event.__struct_fields__]
    if not extra:
        return _Event
    return cast(type[_Event], msgspec.defstruct("_Event", extra, bases=(_Event,)))


_READ = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type")
_STANDARD = ("specversion", "id", "source", "type", "time", "datacontenttype")
_new = tuple.__new__  # Envelope(...) in one C call (a NamedTuple's own __new__ is Python)


def decoder(mapping: Mapping, _settings: Settings) -> Decoder:
    """The CloudEvents decoder of ``mapping`` (see the module docstring).

    Two fast paths, each giving exactly what ``_general`` gives (a property test holds them
    to it) or handing the record to it, which stays the definition and names problems:

    * structured: no headers but the structured content type, and the shape msgspec checks
      in C while it decodes (``_Event``: the required attributes non-empty text, ``time``
      text, no ``data_base64``), plus an RFC 3339 ``time`` that ``iso_ms`` reads;
    * binary: exact lower-case names for every header it reads, each with a value (a header
      in another case or without a value reads differently in the general way's lower-cased,
      value-less-skipping reading), ``content-type`` absent or ``application/json``, JSON
      data, and the same ``time`` condition.
    """
    want_identity = mapping.unique_id is None
    want_time = mapping.time is None
    attributes = mapping.attributes
    decode_event = msgspec.json.Decoder(_event_type(attributes)).decode
    wanted = {f"ce_{n}": n for n in attributes if n not in _STANDARD}
    read = frozenset(_READ).union(wanted)
    dumps = orjson.dumps

    def general(record: SourceRecord) -> Envelope:
        return _general(record, want_identity, want_time, attributes)

    def decode(record: SourceRecord) -> Envelope:
        raw = record.value
        headers = record.headers
        if raw is not None and (
            not headers
            or (
                len(headers) == 1
                and headers[0][1] == _STRUCTURED_JSON
                and headers[0][0].lower() == "content-type"
            )
        ):
            try:
                e = decode_event(raw)
            except msgspec.MsgspecError:
                return general(record)
            time_ms = None
            if want_time and e.time is not None:
                try:
                    time_ms = iso_ms(e.time, "time")
                except MappingError:
                    return general(record)
            found = {n: getattr(e, n) for n in attributes} if attributes else None
            return _new(
                Envelope,
                (
                    e.data,
                    "cloudevents:" + dumps([e.source, e.id]).decode() if want_identity else None,
                    time_ms,
                    found,
                ),
            )
        if not headers:
            return general(record)
        return binary(record)

    def binary(record: SourceRecord) -> Envelope:
        version = event_id = source = kind = time = content_type = None
        extra: dict[str, bytes | None] = {}
        for k, v in record.headers:
            if v is None:
                return general(record)
            if k == "ce_id":
                event_id = v
            elif k == "ce_source":
                source = v
            elif k == "ce_specversion":
                version = v
            elif k == "ce_type":
                kind = v
            elif k == "ce_time":
                time = v
            elif k == "content-type":
                content_type = v
            elif k in wanted:
                extra[wanted[k]] = v
            elif k.lower() in read:
                return general(record)
        if (
            version != b"1.0"
            or not event_id
            or not source
            or not kind
            or (content_type is not None and content_type != b"application/json")
        ):
            return general(record)
        raw = record.value
        try:
            data = _decode_any(raw) if raw else None
            # strict UTF-8 (invalid bytes: the general way, which replaces them)
            source_text, id_text = source.decode(), event_id.decode()
            time_ms = None
            if want_time and time is not None:
                time_ms = iso_ms(time.decode(), "time")
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError, MappingError):
            return general(record)
        found = None
        if attributes:
            extra.update(
                specversion=version,
                id=event_id,
                source=source,
                type=kind,
                time=time,
                datacontenttype=content_type,
            )
            found = {}
            for name in attributes:
                v = extra.get(name)
                found[name] = None if v is None else v.decode("utf-8", "replace")
        ident = None
        if want_identity:
            ident = "cloudevents:" + dumps([source_text, id_text]).decode()
        return _new(Envelope, (data, ident, time_ms, found))

    return decode
