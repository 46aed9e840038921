"""Kafka client plumbing every command shares: connection properties and topic creation."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connector.errors import FatalError
from connector.settings import LibrdkafkaValue, Settings

SECURITY_PREFIXES = ("security.", "sasl.", "ssl.", "client.dns.", "socket.", "broker.address.")


def client_config(settings: Settings) -> dict[str, LibrdkafkaValue]:
    """Connection properties shared by every client we make (consumer props' security part)."""
    conf: dict[str, LibrdkafkaValue] = {"bootstrap.servers": settings.kafka.bootstrap_servers}
    for key, value in settings.kafka.consumer.items():
        if key.startswith(SECURITY_PREFIXES):
            conf[key] = value
    return conf


def ensure_topics(settings: Settings, topics: set[str], timeout: float = 15.0) -> None:
    """Create the DLQ topics that are missing (already existing is fine)."""
    if not topics:
        return
    admin = AdminClient(client_config(settings))
    new = [
        NewTopic(
            t,
            num_partitions=settings.dlq.partitions,
            replication_factor=settings.dlq.replication_factor,
        )
        for t in sorted(topics)
    ]
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise FatalError(f"cannot create dead-letter topic {name!r}: {exc}") from exc
