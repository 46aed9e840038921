"""The events a filtered record would have become: its cell, for the report's ``filtered``
cause (``cells``).

A record a mapping's filters drop gives no events, and the rules of a ``json`` / ``avro`` /
``cloudevents`` mapping drop it before its customer, meter or time are read.  So its events
are made by the same mappings compiled once more without their filters: the same decode,
rules and uniqueIds as ``run``.  A filtered record that would fail mapping without the filter
(``run`` drops it whatever else is wrong with it) has no events and no cell.
"""

from __future__ import annotations

from connector.errors import RecordError
from connector.formats import Mappers
from connector.records import MeterEvent, SourceRecord
from connector.settings import Settings


class Unfiltered:
    """``record`` → the events of ``record`` with its mapping's filters left out.  The
    mappings are compiled on first use (a run that filters nothing never pays for it)."""

    __slots__ = ("_mappers", "_settings")

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._mappers: Mappers | None = None

    def __call__(self, record: SourceRecord) -> list[MeterEvent]:
        if self._mappers is None:
            s = self._settings
            bare = [m.model_copy(update={"filters": []}) for m in s.mappings]
            self._mappers = Mappers(s.model_copy(update={"mappings": bare}))
        try:
            events = self._mappers.for_topic(record.topic)(record)
        except RecordError:
            return []
        return events if isinstance(events, list) else []
