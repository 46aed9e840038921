"""Immutable values passed between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka record exactly as consumed (bytes untouched, so a dead letter can keep them)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    def header(self, name: str) -> bytes | None:
        """Last value of header ``name`` (Kafka allows repeats; the last one wins)."""
        found: bytes | None = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One Amberflo meter event. ``payload()`` is the exact JSON object sent to ``/ingest``.

    Every field is a pure function of the source record (no clock, no randomness), so a
    replayed record produces a byte-identical event and Amberflo discards it as a duplicate.
    """

    customer_id: str
    meter_api_name: str
    meter_value: float | int
    time_ms: int
    unique_id: str
    dimensions: tuple[tuple[str, str], ...] = ()

    def payload(self) -> dict[str, object]:
        body: dict[str, object] = {
            "customerId": self.customer_id,
            "meterApiName": self.meter_api_name,
            "meterValue": self.meter_value,
            "meterTimeInMillis": self.time_ms,
            "uniqueId": self.unique_id,
        }
        if self.dimensions:
            body["dimensions"] = dict(self.dimensions)
        return body


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be delivered, with the reason. Published to the DLQ topic."""

    record: SourceRecord
    stage: str  # decode | transform | sink
    error_class: str
    message: str
    http_status: int | None = None
