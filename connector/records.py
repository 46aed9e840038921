"""Immutable values passed between the pipeline stages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, cast

if TYPE_CHECKING:
    from confluent_kafka import Message

Headers = tuple[tuple[str, bytes | None], ...]
_NO_DIMENSIONS: Mapping[str, str] = MappingProxyType({})


def last_header(headers: Headers, name: str) -> bytes | None:
    """The value of the last header called ``name`` (Kafka allows repeats; the last wins)."""
    found: bytes | None = None
    for k, v in headers:
        if k == name:
            found = v
    return found


class SourceRecord(NamedTuple):
    """One Kafka record exactly as consumed (bytes untouched, so a dead letter can keep them).

    A ``NamedTuple`` (immutable, and three times cheaper to build than a frozen dataclass: the
    worker builds one per consumed record).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @classmethod
    def of(cls, message: Message) -> SourceRecord:
        """The record of a consumed message that carries no error (the worker's hot path
        builds it inline instead)."""
        headers = message.headers()
        return cls(
            message.topic(),  # type: ignore[arg-type]
            message.partition(),  # type: ignore[arg-type]
            message.offset(),  # type: ignore[arg-type]
            message.timestamp()[1],
            message.key(),
            message.value(),
            cast(Headers, tuple(headers)) if headers else (),
        )

    def header(self, name: str) -> bytes | None:
        """Last value of header ``name`` (Kafka allows repeats; the last one wins)."""
        return last_header(self.headers, name)


class MeterEvent:
    """One Amberflo meter event, held as the exact JSON object sent to ``/ingest``.

    Every field is a pure function of the source record (no clock, no randomness), so a
    replayed record produces a byte-identical event and Amberflo discards it as a duplicate.

    Immutable by contract: the body is built once here, ``payload()`` hands out that very
    object (no copy: the sink serialises it as is), and nobody may mutate it.  A ``dimensions``
    dict is kept by reference, so the caller hands it over and must not mutate it either
    (``map_native`` and ``map_json`` pass the freshly decoded record's dict); pairs are
    copied into a dict.  Equality compares the bodies.
    """

    __slots__ = ("_body",)

    def __init__(
        self,
        customer_id: str,
        meter_api_name: str,
        meter_value: float | int,
        time_ms: int,
        unique_id: str,
        dimensions: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        body: dict[str, object] = {
            "customerId": customer_id,
            "meterApiName": meter_api_name,
            "meterValue": meter_value,
            "meterTimeInMillis": time_ms,
            "uniqueId": unique_id,
        }
        if dimensions:
            body["dimensions"] = dimensions if type(dimensions) is dict else dict(dimensions)
        self._body = body

    @property
    def customer_id(self) -> str:
        return cast(str, self._body["customerId"])

    @property
    def meter_api_name(self) -> str:
        return cast(str, self._body["meterApiName"])

    @property
    def meter_value(self) -> float | int:
        return cast("float | int", self._body["meterValue"])

    @property
    def time_ms(self) -> int:
        return cast(int, self._body["meterTimeInMillis"])

    @property
    def unique_id(self) -> str:
        return cast(str, self._body["uniqueId"])

    @property
    def dimensions(self) -> Mapping[str, str]:
        return cast("Mapping[str, str]", self._body.get("dimensions", _NO_DIMENSIONS))

    def payload(self) -> dict[str, object]:
        """The JSON object for ``/ingest`` (the event's own body: read it, never mutate it)."""
        return self._body

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MeterEvent) and self._body == other._body

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MeterEvent({self._body!r})"


class CustomerUpdate(NamedTuple):
    """What a record asks of Amberflo's customer list (Segment ``identify``, a ``kind:
    customer`` mapping): create or replace the customer, then assign ``plan`` (if any) as of
    ``time_s``.  A pure function of the record, like a meter event; the worker applies the
    updates of one customer in record order (``pipeline/customers.py``)."""

    customer_id: str
    name: str
    email: str | None
    traits: Mapping[str, str]
    plan: str | None
    time_s: int

    def payload(self) -> dict[str, object]:
        """The update as JSON (for previews and tests)."""
        out: dict[str, object] = {"customerId": self.customer_id, "customerName": self.name}
        if self.email is not None:
            out["customerEmail"] = self.email
        out["traits"] = dict(self.traits)
        if self.plan is not None:
            out["plan"] = self.plan
            out["planStartTimeInSeconds"] = self.time_s
        return out


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be delivered, with the reason. Published to the DLQ topic."""

    record: SourceRecord
    stage: str  # decode | transform | sink
    error_class: str
    message: str
    http_status: int | None = None
    origin: str | None = None  # the coordinates its uniqueIds derive from (connector.formats.ids)
