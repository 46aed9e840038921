"""Deterministic uniqueIds: the one derivation every format shares.

A record without a uniqueId of its own gets a UUID v5 of
``<topic name>/<partition>/<offset>/<meterApiName>`` (the coordinates of the record's first
publication) in its topic's namespace.  The namespace is the configured one
(``CONNECTOR_TRANSFORM__UNIQUE_ID_NAMESPACE``; by default one fixed namespace, not the group
id, so a renamed group re-reading a topic derives the same ids) or, when the broker reports a
topic id (KIP-516), a UUID v5 of ``<topic name>@<topic id>`` in it: a topic deleted and
recreated under the same name (offsets from 0 again) never repeats an old id.

The coordinates are written ``<topic>/<partition>/<offset>``, ``<topic>`` being
``name@<topic id>`` or the name alone; a record re-published by ``dlq replay`` carries them in
the ``amberflo.origin`` header, which wins over its own, so a replayed record keeps the
uniqueIds it would have had.  No clock and no randomness enter: the same record always yields
the same ids.  (Deriving the topic's namespace once, rather than hashing the topic id with
every record, keeps the per-event SHA-1 input as short as it was: one block.)
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from connector.records import SourceRecord

ORIGIN_HEADER = "amberflo.origin"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class UniqueIds:
    """Deterministic UUID v5 derivation, ``str(uuid.uuid5(namespace, name))`` 2x faster.

    ``topic_key`` maps a topic name to its ``<topic>`` part of the coordinates (see the module
    docstring; ``connector.kafka.TopicIds`` asks the broker); without it, the name.  It is
    asked once per topic.
    """

    __slots__ = ("_base", "_keys", "_namespace", "_own", "_prefixes", "_topic_key")

    def __init__(self, namespace: uuid.UUID, topic_key: Callable[[str], str] | None = None) -> None:
        self._namespace = namespace
        self._base = hashlib.sha1(namespace.bytes)
        self._topic_key = topic_key
        self._keys: dict[str, str] = {}  # topic name → its <topic> part
        self._prefixes: dict[str, Any] = {}  # <topic> → SHA-1 state of namespace + "name/"
        self._own: dict[str, Any] = {}  # topic name → the same, for its records' own ids

    def derive(self, name: str, meter: str) -> str:
        """``uuid5(namespace, f"{name}/{meter}")``: for identities a format carries itself."""
        h = self._base.copy()
        h.update(f"{name}/{meter}".encode())
        return _uuid(h.hexdigest())

    def of(self, record: SourceRecord, meter: str) -> str:
        """The derived uniqueId of ``meter`` of ``record`` (its origin's, when replayed)."""
        if record.headers:
            origin = record.header(ORIGIN_HEADER)
            if origin:
                return self.at(origin.decode("utf-8", "replace"), meter)
        topic = record.topic
        prefix = self._own.get(topic)
        if prefix is None:
            prefix = self._own[topic] = self._prefix(self.topic(topic))
        h = prefix.copy()
        h.update(f"{record.partition}/{record.offset}/{meter}".encode())
        return _uuid(h.hexdigest())

    def at(self, coordinates: str, meter: str) -> str:
        """The derived uniqueId of ``meter`` of the record at ``coordinates``."""
        key, _, rest = coordinates.partition("/")
        h = self._prefix(key).copy()
        h.update(f"{rest}/{meter}".encode())
        return _uuid(h.hexdigest())

    def coordinates(self, record: SourceRecord) -> str:
        """``<topic>/<partition>/<offset>`` of the record's first publication (its
        ``amberflo.origin`` header when it has one): what its derived ids are made of."""
        if record.headers:
            origin = record.header(ORIGIN_HEADER)
            if origin:
                return origin.decode("utf-8", "replace")
        return f"{self.topic(record.topic)}/{record.partition}/{record.offset}"

    def topic(self, name: str) -> str:
        """The ``<topic>`` part of the coordinates of topic ``name`` (asked once per topic)."""
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = self._topic_key(name) if self._topic_key else name
        return key

    def _prefix(self, key: str) -> Any:
        h = self._prefixes.get(key)
        if h is None:
            name, at, _topic_id = key.partition("@")
            namespace = uuid.uuid5(self._namespace, key) if at else self._namespace
            h = self._prefixes[key] = hashlib.sha1(namespace.bytes)
            h.update(f"{name}/".encode())
        return h


def _uuid(x: str) -> str:
    # version nibble 5 and the RFC 4122 variant bits, as uuid.uuid5 sets them
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"
