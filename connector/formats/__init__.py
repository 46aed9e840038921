"""Record formats: the bytes of a Kafka record → the meter events it stands for.

A ``Mapper`` is the whole per-record contract between the pipeline and a format:

* pure and deterministic: the same record (coordinates, timestamp, headers, bytes) always
  gives the same events, byte for byte, so a re-read record is a duplicate Amberflo discards;
* a bad record raises a ``RecordError`` (``DecodeError``: stage ``decode``; ``MappingError``:
  stage ``transform``) and is dead-lettered;
* an empty list means nothing is to be delivered (filtered, or a kind the format skips): the
  record is done at once and its offset may be committed;
* a ``CustomerUpdate`` instead of events (Segment ``identify``, a ``kind: customer`` mapping)
  asks for a customer upsert and plan assignment; the worker applies those in record order
  per customer (``pipeline/customers.py``), with the same retry / dead-letter / commit
  contract as ingest.

``Mappers`` says which mapper reads which topic: the ``mappings`` entry that names the topic
(an exact name wins over a ``^regex``; among patterns the first in order wins).  A topic no
entry matches, and every topic when there is no ``mappings`` section, is read by ``native``
(``map_json``, the fast path, unchanged).  A ``native`` entry may add filters.

Adding a format
---------------
A format that maps by rules registers a *decoder factory* in ``DECODERS`` (one line)::

    DECODERS["avro"] = avro.decoder   # (mapping: config.Mapping, settings: Settings) -> Decoder

A format with fixed semantics (no rules) registers a whole mapper instead, in ``MAPPERS``
(``segment``): ``(mapping, ids) -> Mapper``.  A rules format with ``kind: customer`` gets a
``CustomerMapper`` (``customers.py``) instead of the usage rules.

The factory runs once per ``mappings`` entry when the connector starts (a ``ConfigError``
it raises stops the start with that line).  The ``Decoder`` it returns runs per record:
``SourceRecord`` → the decoded value the rules read (``dict``/``list``/scalars), or an
``rules.Envelope`` when the format carries its own event identity and time (CloudEvents).
It raises ``DecodeError`` for bytes it cannot read (→ DLQ stage ``decode``) and a
``RetryableError`` for an infrastructure failure that is not the record's fault (a schema
registry that is down): the worker backs off and never dead-letters it.  It must be pure
apart from caches (a schema fetched once).  The rules (``rules.py``) do the rest: fields,
checks, uniqueIds, filters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from connector.formats import avro, cloudevents
from connector.formats.config import Mapping
from connector.formats.customers import CustomerMapper
from connector.formats.ids import UniqueIds
from connector.formats.native import decode_record, map_json
from connector.formats.rules import Decoder, Filtered, NativeFilter, Rules
from connector.formats.segment import SegmentMapper
from connector.records import CustomerUpdate, MeterEvent, SourceRecord

if TYPE_CHECKING:
    from connector.settings import Settings

Mapper = Callable[[SourceRecord], list[MeterEvent] | CustomerUpdate]
DecoderFactory = Callable[[Mapping, "Settings"], Decoder]
MapperFactory = Callable[[Mapping, UniqueIds], Mapper]
log = logging.getLogger("connector.formats")


def _json(_mapping: Mapping, _settings: Settings) -> Decoder:
    return decode_record


DECODERS: dict[str, DecoderFactory] = {
    "json": _json,
    "cloudevents": cloudevents.decoder,
    "avro": avro.decoder,
    "avro-schemaless": avro.schemaless_decoder,
}
"""Formats mapped by rules: name → decoder factory (see "Adding a format")."""

MAPPERS: dict[str, MapperFactory] = {"segment": SegmentMapper}
"""Formats with fixed semantics: name → mapper factory (see "Adding a format")."""


def known_formats() -> list[str]:
    return ["native", *DECODERS, *MAPPERS]


class Mappers:
    """The mapper of each topic, built once per topic on first use.

    Every ``mappings`` entry is compiled (decoder and rules) here, at start, so that a
    configuration a decoder factory refuses stops the connector before it consumes."""

    def __init__(self, settings: Settings, topic_key: Callable[[str], str] | None = None) -> None:
        self.ids = self._ids = UniqueIds(settings.unique_id_namespace, topic_key)
        """The uniqueId derivation (``topic_key``: see ``UniqueIds``; the running connector
        gives ``connector.kafka.TopicIds``)."""
        self._max_events = settings.transform.max_events_per_record
        self._by_topic: dict[str, Mapper] = {}
        self._entries: list[tuple[Mapping, Decoder | None, Rules | Mapper | None]] = []
        for i, mapping in enumerate(settings.mappings):
            if mapping.format == "native":
                self._entries.append((mapping, None, None))
            elif mapping.format in MAPPERS:
                self._entries.append((mapping, None, MAPPERS[mapping.format](mapping, self._ids)))
            else:
                decode = DECODERS[mapping.format](mapping, settings)
                if mapping.kind == "customer":
                    self._entries.append((mapping, decode, CustomerMapper(decode, mapping)))
                else:
                    self._entries.append((mapping, decode, Rules(mapping, i)))

    def mapping_for(self, topic: str) -> tuple[int, Mapping] | None:
        """The index and entry of ``mappings`` that reads ``topic`` (None: native)."""
        for i, (m, _d, _r) in enumerate(self._entries):
            if topic in m.topics:
                return i, m
        for i, (m, _d, _r) in enumerate(self._entries):
            if any(t[0] == "^" and re.search(t, topic) for t in m.topics):
                return i, m
        return None

    def for_topic(self, topic: str) -> Mapper:
        mapper = self._by_topic.get(topic)
        if mapper is None:
            mapper = self._by_topic[topic] = self._build(topic)
        return mapper

    def _build(self, topic: str) -> Mapper:
        found = self.mapping_for(topic)
        native = partial(map_json, ids=self._ids, max_events=self._max_events)
        if found is None:
            if self._entries:
                log.info("topic %s: no mappings entry names it, read as native", topic)
            return native
        i, mapping = found
        _m, decode, rules = self._entries[i]
        if rules is None:
            return NativeFilter(native, mapping) if mapping.filters else native
        if not isinstance(rules, Rules):  # a whole mapper: segment, kind customer
            return rules
        assert decode is not None
        return rules.bind(decode, self._ids)


def evaluate(mapper: Mapper, record: SourceRecord) -> list[MeterEvent] | CustomerUpdate | Filtered:
    """What ``mapper`` makes of ``record``, telling a filtered (or skipped) record apart (for
    previews)."""
    explain: Any = getattr(mapper, "evaluate", None)
    return explain(record) if explain is not None else mapper(record)
