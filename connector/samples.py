"""Sample usage for trying the connector: one workload, written in every format it reads.

``produce`` and ``demo`` publish it.  Each format comes with the ``mappings`` entry that reads
it (docs/mappings.md), so whatever the format, the totals in Amberflo equal ``totals()``:

* ``native``: the Amberflo-shaped JSON event (schemas/usage_event.schema.json);
* ``json``: a team's own JSON, ``{"id", "tenant": {"id"}, "usage": {"meter", "quantity"},
  "ts", "region"}``, its ``id`` the uniqueId;
* ``cloudevents``: CloudEvents 1.0 in structured mode, that JSON (without ``id`` and ``ts``)
  as ``data``; ``source`` + ``id`` make the uniqueId and ``time`` the meter time;
* ``avro``: the native event in Avro (schemas/usage_event.avsc), Confluent wire format through
  a Schema Registry (subject ``<topic>-value``).

Amounts are multiples of 0.25, so float sums are exact.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, NamedTuple

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer
from rich.progress import Progress

from connector.errors import ConfigError, FatalError
from connector.kafka import produce_queued

FORMATS = ("native", "json", "avro", "cloudevents")
METERS = ("api-calls", "storage-gb-hours", "compute-seconds")
REGIONS = ("us-east-1", "eu-west-1")
CE_SOURCE = "urn:amberflo-connector:sample"
CE_CONTENT_TYPE: list[tuple[str, str | bytes | None]] = [
    ("content-type", b"application/cloudevents+json")
]
AVRO_SCHEMA: dict[str, Any] = json.loads(
    files("connector.formats").joinpath("usage_event.avsc").read_text(encoding="utf-8")
)
Totals = dict[tuple[str, str], float]
Headers = list[tuple[str, str | bytes | None]]
Record = tuple[bytes, Headers | None]
"""A record to produce: its value and its headers."""


class Usage(NamedTuple):
    customer: str
    meter: str
    value: float
    time_ms: int
    region: str
    event_id: str


def usage(n: int, customers: int, seed: int | None = None) -> list[Usage]:
    """``n`` usage facts over the last hour, spread over ``customers`` customers and the
    meters in turn (``seed``: the same facts every time, event ids included)."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    names = [f"customer-{i:02d}" for i in range(customers)]
    out = []
    for i in range(n):
        meter = METERS[i % len(METERS)]
        value = 1.0 if meter == "api-calls" else rng.randint(1, 400) / 4
        out.append(
            Usage(
                names[rng.randrange(customers)],
                meter,
                value,
                now_ms - rng.randrange(3_600_000),
                rng.choice(REGIONS),
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            )
        )
    return out


def totals(facts: list[Usage]) -> Totals:
    out: Totals = defaultdict(float)
    for u in facts:
        out[(u.meter, u.customer)] += u.value
    return dict(out)


def native(u: Usage) -> dict[str, Any]:
    return {
        "customerId": u.customer,
        "meterApiName": u.meter,
        "meterValue": u.value,
        "meterTimeInMillis": u.time_ms,
        "dimensions": {"region": u.region},
    }


def _payload(u: Usage) -> dict[str, Any]:
    return {"tenant": {"id": u.customer}, "usage": {"meter": u.meter, "quantity": u.value},
            "region": u.region}  # fmt: skip


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def encode(fmt: str, facts: list[Usage], topic: str, registry: str | None = None) -> list[Record]:
    """The records of ``facts`` in ``fmt`` (``registry``: the Schema Registry URL, for avro)."""
    if fmt == "native":
        return [(orjson.dumps(native(u)), None) for u in facts]
    if fmt == "json":
        return [
            (orjson.dumps({"id": u.event_id, **_payload(u), "ts": u.time_ms}), None) for u in facts
        ]
    if fmt == "cloudevents":
        return [(orjson.dumps(_cloudevent(u)), CE_CONTENT_TYPE) for u in facts]
    if fmt == "avro":
        serialize = avro_serializer(topic, registry)
        return [(serialize(native(u) | {"uniqueId": None}), None) for u in facts]
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _cloudevent(u: Usage) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": u.event_id,
        "source": CE_SOURCE,
        "type": "com.example.usage.recorded",
        "time": _iso(u.time_ms),
        "datacontenttype": "application/json",
        "data": _payload(u),
    }


def avro_serializer(topic: str, registry: str | None) -> Any:
    """Confluent's ``AvroSerializer`` of the usage event for ``topic`` (registers the schema
    under ``<topic>-value`` on first use): a callable ``event dict → bytes``."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    if not registry:
        raise ValueError("format avro needs a Schema Registry URL")
    ser = AvroSerializer(SchemaRegistryClient({"url": registry}), json.dumps(AVRO_SCHEMA))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return lambda event: ser(event, ctx)


def mappings(fmt: str, topic: str) -> list[dict[str, Any]]:
    """The ``mappings`` entry that reads ``fmt`` on ``topic`` (none for native)."""
    rules: dict[str, Any] = {
        "json": {
            "customer_id": {"path": "tenant.id"},
            "meter": {"path": "usage.meter"},
            "value": {"path": "usage.quantity"},
            "time": {"path": "ts", "unit": "ms"},
            "dimensions": {"region": {"path": "region"}},
            "unique_id": {"path": "id"},
        },
        "cloudevents": {
            "customer_id": {"path": "tenant.id"},
            "meter": {"path": "usage.meter"},
            "value": {"path": "usage.quantity"},
            "dimensions": {"region": {"path": "region"}},
        },
        "avro": {
            "customer_id": {"path": "customerId"},
            "meter": {"path": "meterApiName"},
            "value": {"path": "meterValue"},
            "time": {"path": "meterTimeInMillis", "unit": "ms"},
            "dimensions": {"region": {"path": "dimensions.region", "default": None}},
        },
    }
    if fmt == "native":
        return []
    return [{"topics": [topic], "format": fmt, **rules[fmt]}]


def malformed(fmt: str, topic: str, registry: str | None = None) -> list[Record]:
    """A few records of ``fmt`` the connector must dead-letter (the demo's check)."""
    if fmt == "native":
        return [
            (raw, None)
            for raw in (
                b"{not json",
                b'{"meterApiName": "api-calls", "meterValue": 1}',  # no customerId
                b'{"customerId": "acme", "meterApiName": "api-calls", "meterValue": "ten"}',
                b'{"customerId": "acme", "meterApiName": "api-calls", "meterTimeInMillis": -5}',
                b"[1, 2, 3]",
            )
        ]
    fact = usage(1, 1, seed=0)[0]
    if fmt == "json":
        good = {"id": "bad-1", **_payload(fact), "ts": fact.time_ms}
        return [
            (b"{not json", None),
            (orjson.dumps({**good, "tenant": {}}), None),  # no tenant.id
            (orjson.dumps({**good, "usage": {"meter": "api-calls", "quantity": "ten"}}), None),
        ]
    if fmt == "cloudevents":
        event = _cloudevent(fact)
        return [
            (b"{not json", CE_CONTENT_TYPE),
            (orjson.dumps({**event, "specversion": "0.3"}), CE_CONTENT_TYPE),
            (orjson.dumps({**event, "data": {"usage": {"quantity": 1}}}), CE_CONTENT_TYPE),
        ]
    if fmt == "avro":
        good = avro_serializer(topic, registry)(native(fact) | {"uniqueId": None})
        return [
            (b"{not avro", None),  # not the wire format
            (b"\x00\x00\x0f\x42\x40" + good[5:], None),  # schema id 1000000: unknown
            (good[:-3], None),  # truncated
        ]
    raise ValueError(f"unknown format {fmt!r}")


def publish(
    bootstrap: str,
    topic: str,
    records: list[Record],
    progress: Progress | None = None,
    properties: dict[str, str] | None = None,
) -> None:
    """Produce ``records`` to ``topic`` and wait until the broker acknowledged each one.

    Raises ``FatalError`` (one line) when the brokers cannot be reached or a record is refused.
    ``properties`` are extra librdkafka producer properties (security, …)."""
    try:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 10,
                "compression.type": "lz4",
                # librdkafka's own error lines (one per connection attempt) would bury the one
                # line this raises; -X log_level=7 brings them back.
                "log_level": 2,
                **(properties or {}),
            }
        )
    except KafkaException as exc:  # a property librdkafka refuses: one line, exit 2
        err = exc.args[0] if exc.args else exc
        raise ConfigError(f"-X: {err.str() if isinstance(err, KafkaError) else err}") from exc
    try:
        producer.list_topics(timeout=10)
    except KafkaException as exc:
        raise FatalError(f"cannot reach Kafka at {bootstrap}: {exc.args[0].str()}") from exc
    refused: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            refused.append(err.str())

    task = progress.add_task("producing", total=len(records)) if progress else None
    for i, (value, headers) in enumerate(records):
        produce_queued(producer, topic, value=value, headers=headers, on_delivery=on_delivery)
        if i % 5000 == 0:
            producer.poll(0)
            if progress and task is not None:
                progress.update(task, completed=i)
    left = producer.flush(60)
    if refused or left:
        reason = refused[0] if refused else f"{left} not acknowledged within 60s"
        raise FatalError(f"producing to {topic} at {bootstrap} failed: {reason}")
    if progress and task is not None:
        progress.update(task, completed=len(records))
