"""Record formats: the bytes of a Kafka record → the meter events it stands for.

A ``Mapper`` is the whole per-record contract between the pipeline and a format:

* pure and deterministic: the same record (coordinates, timestamp, headers, bytes) always
  gives the same events, byte for byte, so a re-read record is a duplicate Amberflo discards;
* a bad record raises a ``RecordError`` (``DecodeError``: stage ``decode``; ``MappingError``:
  stage ``transform``) and is dead-lettered;
* an empty list means nothing is to be delivered (filtered, or a kind the format skips): the
  record is done at once and its offset may be committed.

``Mappers`` says which mapper reads which topic.  Today every topic is ``native``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from connector.formats.ids import UniqueIds
from connector.formats.native import map_json
from connector.records import MeterEvent, SourceRecord
from connector.settings import Settings

Mapper = Callable[[SourceRecord], list[MeterEvent]]


class Mappers:
    """The mapper of each topic, built once per topic on first use."""

    def __init__(self, settings: Settings) -> None:
        self._ids = UniqueIds(settings.unique_id_namespace)
        self._by_topic: dict[str, Mapper] = {}

    def for_topic(self, topic: str) -> Mapper:
        mapper = self._by_topic.get(topic)
        if mapper is None:
            mapper = self._by_topic[topic] = partial(map_json, ids=self._ids)
        return mapper
