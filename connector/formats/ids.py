"""Deterministic uniqueIds: the one derivation every format shares.

A record without a uniqueId of its own gets a UUID v5 of ``<coordinates>/<meterApiName>`` in
the configured namespace (``CONNECTOR_TRANSFORM__UNIQUE_ID_NAMESPACE``; by default one fixed
namespace, not the group id, so a renamed group re-reading a topic derives the same ids).  The
coordinates are ``<topic>/<partition>/<offset>`` of the record's first publication, where
``<topic>`` is ``name@<topic id>`` when the broker reports a topic id (KIP-516), so a topic
deleted and recreated under the same name (offsets from 0 again) never repeats an old id;
without a topic id it is the name alone.  A record re-published by ``dlq replay`` carries those
coordinates in the ``amberflo.origin`` header, which wins over its own, so a replayed record
keeps the uniqueIds it would have had.  No clock and no randomness enter: the same record
always yields the same ids.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

from connector.records import SourceRecord

ORIGIN_HEADER = "amberflo.origin"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class UniqueIds:
    """Deterministic UUID v5 derivation: ``str(uuid.uuid5(namespace, name))``, 2x faster.

    ``topic_key`` maps a topic name to its ``<topic>`` part of the coordinates (see the module
    docstring; ``connector.kafka.TopicIds`` asks the broker); without it, the name.  It is
    asked once per topic.
    """

    __slots__ = ("_base", "_keys", "_topic_key")

    def __init__(self, namespace: uuid.UUID, topic_key: Callable[[str], str] | None = None) -> None:
        self._base = hashlib.sha1(namespace.bytes)
        self._topic_key = topic_key
        self._keys: dict[str, str] = {}

    def derive(self, coordinates: str, meter: str) -> str:
        h = self._base.copy()
        h.update(f"{coordinates}/{meter}".encode())
        x = h.hexdigest()
        # version nibble 5 and the RFC 4122 variant bits, as uuid.uuid5 sets them
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"

    def coordinates(self, record: SourceRecord) -> str:
        """``<topic>/<partition>/<offset>`` of the record's first publication (its
        ``amberflo.origin`` header when it has one): what its derived ids are made of."""
        if record.headers:
            origin = record.header(ORIGIN_HEADER)
            if origin:
                return origin.decode("utf-8", "replace")
        key = self._keys.get(record.topic) or self.topic(record.topic)
        return f"{key}/{record.partition}/{record.offset}"

    def topic(self, name: str) -> str:
        """The ``<topic>`` part of the coordinates of topic ``name`` (asked once per topic)."""
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = self._topic_key(name) if self._topic_key else name
        return key
