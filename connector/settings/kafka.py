"""The Kafka side: the source consumer, the dead-letter topics and the retention guard.

``PROTECTED_CONSUMER`` / ``PROTECTED_PRODUCER`` are the librdkafka properties the delivery
contract depends on; validation refuses them in ``CONNECTOR_KAFKA__CONSUMER`` / ``__PRODUCER``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from connector.settings.base import REQUIRED_BY_RUN, Section

LibrdkafkaValue = str | int | float | bool

_NO_AUTO_COMMIT = "offsets are committed only after their records are delivered"
PROTECTED_CONSUMER = {
    "enable.auto.commit": _NO_AUTO_COMMIT,
    "auto.commit.enable": _NO_AUTO_COMMIT,
    "enable.auto.offset.store": _NO_AUTO_COMMIT,
    "isolation.level": "usage from aborted transactions must never be billed",
    "group.id": "set CONNECTOR_KAFKA__GROUP_ID instead",
    "bootstrap.servers": "set CONNECTOR_KAFKA__BOOTSTRAP_SERVERS instead",
}
"""librdkafka consumer properties ``CONNECTOR_KAFKA__CONSUMER`` may not set, and why."""
_ACKED = "a dead letter counts as written only once every replica has it, exactly once"
PROTECTED_PRODUCER = {
    "acks": _ACKED,
    "request.required.acks": _ACKED,
    "enable.idempotence": _ACKED,
}
"""librdkafka producer properties ``CONNECTOR_KAFKA__PRODUCER`` may not set, and why."""


def _refuse_protected(value: dict[str, Any], protected: dict[str, str]) -> dict[str, Any]:
    for key in value:
        reason = protected.get(key.strip().lower())
        if reason is not None:
            raise ValueError(f"{key!r} cannot be overridden ({reason})")
    return value


class KafkaSettings(Section):
    bootstrap_servers: str = Field(
        "localhost:9092", description="Kafka bootstrap servers, host:port[,host:port…]."
    )
    group_id: str = Field(
        "amberflo-connector", min_length=1, description="Consumer group id of the connector."
    )
    topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Topics to read: comma-separated or a JSON list; an entry starting with "
        "'^' is a regular expression (Python re.search) over the cluster's topics, never "
        "matching dead-letter topics (*.dlq, CONNECTOR_DLQ__TOPIC) or internal ones (__*).",
        min_length=1,
        json_schema_extra=REQUIRED_BY_RUN,
    )
    pattern_refresh_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="How often the topic list is read again to apply the '^' patterns to new "
        "and deleted topics.",
    )
    consumer: dict[str, LibrdkafkaValue] = Field(
        default_factory=dict,
        description="Extra librdkafka properties for the consumer (security.protocol, sasl.*, "
        "ssl.*, session.timeout.ms, …); they override the connector's own defaults "
        "(fetch.wait.max.ms 100, fetch.queue.backoff.ms 20). Security properties are also "
        "given to the DLQ producer. enable.auto.commit, enable.auto.offset.store, "
        "isolation.level (read_committed), group.id and bootstrap.servers cannot be set here.",
    )
    producer: dict[str, LibrdkafkaValue] = Field(
        default_factory=dict,
        description="Extra librdkafka properties for the DLQ producer; acks (all) and "
        "enable.idempotence (true) cannot be set here.",
    )
    assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin"] = Field(
        "cooperative-sticky", description="partition.assignment.strategy of the consumer group."
    )
    commit_interval_ms: int = Field(
        1000, ge=10, le=600_000, description="Commit done offsets at least this often."
    )
    startup_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Give up when the brokers stay unreachable this long."
    )
    poll_batch: int = Field(
        2000, ge=1, le=100_000, description="Records taken from librdkafka per consume() call."
    )
    fetch_queue_kbytes: int = Field(
        16384,
        ge=64,
        le=2_097_151,
        description="queued.max.messages.kbytes: bounds librdkafka's prefetch (memory).",
    )

    @field_validator("topics", mode="before")
    @classmethod
    def _split_topics(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"not a valid JSON list ({exc})") from None
            return [t.strip() for t in text.split(",") if t.strip()]
        return value

    @field_validator("topics")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for topic in value:
            if topic.startswith("^"):
                try:
                    re.compile(topic)
                except re.error as exc:
                    raise ValueError(
                        f"{topic!r} is not a valid regular expression ({exc})"
                    ) from None
        return value

    @field_validator("consumer")
    @classmethod
    def _consumer_keeps_the_contract(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _refuse_protected(value, PROTECTED_CONSUMER)

    @field_validator("producer")
    @classmethod
    def _producer_keeps_the_contract(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _refuse_protected(value, PROTECTED_PRODUCER)


class DlqSettings(Section):
    topic: str | None = Field(
        None, description="Dead-letter topic (default: '<source topic>.dlq')."
    )
    header_style: Literal["amberflo", "connect"] = Field(
        "amberflo",
        description="'amberflo' writes amberflo.* headers; 'connect' writes Kafka Connect's "
        "__connect.errors.* headers.",
    )
    partitions: int = Field(1, ge=1, le=10_000, description="Partitions of a created DLQ topic.")
    replication_factor: int = Field(
        -1, ge=-1, le=32, description="Replication factor of a created DLQ topic (-1: broker's)."
    )


class RetentionGuardSettings(Section):
    warn_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Warn when a partition's oldest unfinished record is older than this share "
        "of its topic's retention.ms (read from the broker).",
    )
    critical_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Critical (error log, metric amberflo_connector_retention_guard 2) from "
        "this share on; must be ≥ warn_ratio.",
    )

    @field_validator("critical_ratio")
    @classmethod
    def _above_warn(cls, value: float, info: ValidationInfo) -> float:
        warn = info.data.get("warn_ratio")
        if warn is not None and value < warn:
            raise ValueError(f"must be ≥ warn_ratio ({warn})")
        return value
