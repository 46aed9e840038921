"""Figure 2 per format: decode + map of the mapped formats, next to native in the same run.

Each workload carries the same usage as the native bench record (a customer, a value, a time
and six dimensions, ~250 bytes) in its own shape, with the ``mappings`` entry that reads it.
``run.py`` measures each with ``transform_only.run`` (the real ``Worker._handle``) right after
native on as many native records, repetition by repetition, and reports each format's rate
and its ratio to that native run (the issue's goal: ≥ 70%).

A format adds its figure by adding a ``Workload`` to ``WORKLOADS``; one that needs more
settings than its mapping (the Schema Registry of ``avro``) gives them with ``more``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fastavro
import orjson

from benchmarks.common import PARTITIONS, T0_MS, new_producer
from connector.kafka import produce_queued

Headers = list[tuple[str, bytes]] | None

_REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
_PLANS = ("free", "team", "enterprise")


def _usage(i: int) -> dict[str, Any]:
    return {
        "tenant": {"id": f"customer-{i % 1000:06d}"},
        "usage": {"requests": 1 + i % 7},
        "region": _REGIONS[i % 3],
        "plan": {"tier": _PLANS[i % 3]},
        "request": {
            "endpoint": f"/v1/projects/{i % 97}/orders/create",
            "method": "POST",
            "status": 200,
        },
        "sdk": "python-3.11",
    }


_RULES: dict[str, Any] = {
    "customer_id": {"path": "tenant.id"},
    "meter": "api-calls",
    "value": {"path": "usage.requests"},
    "dimensions": {
        "region": {"path": "region"},
        "plan": {"path": "plan.tier"},
        "endpoint": {"path": "request.endpoint"},
        "method": {"path": "request.method"},
        "status": {"path": "request.status"},
        "sdk": {"path": "sdk"},
    },
    "filters": [{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}],
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _json(i: int) -> tuple[bytes, Headers]:
    return orjson.dumps({**_usage(i), "ts": T0_MS + i}), None


def _ce_structured(i: int) -> tuple[bytes, Headers]:
    event = {
        "specversion": "1.0",
        "id": f"evt-{i}",
        "source": "/api-gateway",
        "type": "com.acme.api.call",
        "time": _iso(T0_MS + i),
        "datacontenttype": "application/json",
        "data": _usage(i),
    }
    return orjson.dumps(event), [("content-type", b"application/cloudevents+json")]


def _ce_binary(i: int) -> tuple[bytes, Headers]:
    return orjson.dumps(_usage(i)), [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"evt-{i}".encode()),
        ("ce_source", b"/api-gateway"),
        ("ce_type", b"com.acme.api.call"),
        ("ce_time", _iso(T0_MS + i).encode()),
        ("content-type", b"application/json"),
    ]


_AVRO_SCHEMA = {
    "type": "record",
    "name": "ApiCall",
    "namespace": "bench",
    "fields": [
        {"name": "tenant", "type": {"type": "record", "name": "Tenant", "fields": [
            {"name": "id", "type": "string"}]}},
        {"name": "usage", "type": {"type": "record", "name": "Usage", "fields": [
            {"name": "requests", "type": "long"}]}},
        {"name": "region", "type": "string"},
        {"name": "plan", "type": {"type": "record", "name": "Plan", "fields": [
            {"name": "tier", "type": "string"}]}},
        {"name": "request", "type": {"type": "record", "name": "Request", "fields": [
            {"name": "endpoint", "type": "string"},
            {"name": "method", "type": "string"},
            {"name": "status", "type": "int"}]}},
        {"name": "sdk", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}  # fmt: skip


class _Avro:
    """The avro workload's Schema Registry: the local one, in this process, started on first
    use with ``_AVRO_SCHEMA`` registered (the worker fetches it once, like any writer schema)."""

    url = ""
    header = b""
    schema: Any = None

    @classmethod
    def setup(cls) -> dict[str, Any]:
        if not cls.url:
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

            from connector.local_registry import LocalSchemaRegistry

            registry = LocalSchemaRegistry().start()
            client = SchemaRegistryClient({"url": registry.url})
            schema_id = client.register_schema(
                "bench-value", Schema(orjson.dumps(_AVRO_SCHEMA).decode())
            )
            cls.url, cls.header = registry.url, b"\x00" + struct.pack(">I", schema_id)
            cls.schema = fastavro.parse_schema(_AVRO_SCHEMA)
        return {"schema_registry": {"url": cls.url}}


def _avro(i: int) -> tuple[bytes, Headers]:
    _Avro.setup()
    buf = io.BytesIO()
    buf.write(_Avro.header)
    fastavro.schemaless_writer(buf, _Avro.schema, {**_usage(i), "ts": T0_MS + i})
    return buf.getvalue(), None


@dataclass(frozen=True)
class Workload:
    key: str  # figure key
    title: str
    record: Callable[[int], tuple[bytes, Headers]]
    mapping: dict[str, Any]  # the mappings entry, without topics
    more: Callable[[], dict[str, Any]] = field(default=dict)  # settings beside the mapping

    def mappings(self, topic: str) -> list[dict[str, Any]]:
        return [{"topics": [topic], **self.mapping}]

    def settings(self) -> dict[str, Any]:
        return self.more()


WORKLOADS = [
    Workload(
        "2j",
        "Decode + map, json with rules",
        _json,
        {"format": "json", **_RULES, "time": {"path": "ts", "unit": "ms"}},
    ),
    Workload(
        "2c",
        "Decode + map, CloudEvents structured",
        _ce_structured,
        {"format": "cloudevents", **_RULES},
    ),
    Workload(
        "2cb", "Decode + map, CloudEvents binary", _ce_binary, {"format": "cloudevents", **_RULES}
    ),
    Workload(
        "2a",
        "Decode + map, avro (Schema Registry)",
        _avro,
        {"format": "avro", **_RULES, "time": {"path": "ts", "unit": "ms"}},
        _Avro.setup,
    ),
]


def produce(bootstrap: str, topic: str, n: int, workload: Workload) -> None:
    """``n`` records of ``workload`` round-robin over the topic's partitions, all acked."""
    producer = new_producer(bootstrap)
    failed = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    for i in range(n):
        value, headers = workload.record(i)
        produce_queued(
            producer,
            topic,
            value=value,
            partition=i % PARTITIONS,
            headers=headers,
            on_delivery=on_delivery,
            wait_s=0.01,
        )
        if i % 20_000 == 0:
            producer.poll(0)
    if producer.flush(60) or failed:
        raise RuntimeError(f"producing to {topic}: {failed} failed deliveries")
