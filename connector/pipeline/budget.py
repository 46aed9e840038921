"""How much a worker holds in memory, in meter events and bytes, so backpressure can bound it.

Records alone (``max_buffered_records``) do not bound memory: one record with a ``values`` map
expands into up to ``max_events_per_record`` events, and a record can be megabytes.  So the
worker also counts the events it holds (mapped, not yet answered by the sink: in an open batch,
queued, or being sent) and their estimated bytes, and pauses consumption at
``max_buffered_events`` or ``max_buffered_mb``.

The estimate, per record: its value bytes + ``RECORD_BYTES`` (key and headers included) +
``EVENT_BYTES`` per event.  While a poll is mapped, only the value bytes and the events count
against the room left (the rest is added when the poll is done: at most a poll's worth late).
Measured with tracemalloc on native records, 20,000 held as the worker holds them
(``SourceRecord``, decoded dimensions, ``MeterEvent`` bodies and uniqueIds, ``Item``s): a
198-byte single-event record held 1,570 bytes, a 231-byte record with ten meters 5,351 (the
estimate: 1,598 and 5,231).

The main thread adds what ``_handle`` maps; the delivery threads release each batch once the
sink answered it (delivered, rejected or abandoned), its bytes as its share of the events held
(which keeps the per-record path free of per-batch bookkeeping; all released, all are zero).
"""

from __future__ import annotations

import threading

from connector.settings import SinkSettings

RECORD_BYTES = 1000
"""Estimated bytes a held record costs beyond its value (see the module docstring)."""
EVENT_BYTES = 400
"""Estimated bytes each of its meter events adds."""


class Budget:
    def __init__(self, sink: SinkSettings) -> None:
        self.max_events = sink.max_buffered_events
        self.max_bytes = sink.max_buffered_mb * 1024 * 1024
        self.events = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, events: int, nbytes: int) -> None:
        with self._lock:
            self.events += events
            self.bytes += nbytes

    def release(self, events: int) -> None:
        with self._lock:
            held = self.events
            if events >= held:
                self.events = self.bytes = 0
                return
            self.bytes -= self.bytes * events // held
            self.events = held - events

    @property
    def full(self) -> bool:
        return self.events >= self.max_events or self.bytes >= self.max_bytes

    @property
    def half_empty(self) -> bool:
        return self.events <= self.max_events // 2 and self.bytes <= self.max_bytes // 2
