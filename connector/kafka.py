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
    """Create the dead-letter topics that are missing.

    Metadata first: a topic that exists is left alone, so a cluster where the connector may
    not create topics works as long as its DLQ topics exist.  A topic that is missing and
    cannot be created stops the connector with one line naming the topic and the permission.
    """
    if not topics:
        return
    # allow.auto.create.topics: a metadata request for a missing topic must not create it
    admin = AdminClient({**client_config(settings), "allow.auto.create.topics": False})
    missing = [t for t in sorted(topics) if not _exists(admin, t, settings, timeout)]
    if not missing:
        return
    new = [
        NewTopic(
            t,
            num_partitions=settings.dlq.partitions,
            replication_factor=settings.dlq.replication_factor,
        )
        for t in missing
    ]
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if code in _DENIED:
                raise FatalError(
                    f"dead-letter topic {name!r} does not exist and the connector is not allowed "
                    f"to create it ({err.str() if isinstance(err, KafkaError) else exc}): create "
                    f"it beforehand, or grant CREATE on topic {name!r} (or on the cluster)"
                ) from exc
            raise FatalError(f"cannot create dead-letter topic {name!r}: {exc}") from exc


_DENIED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


def _exists(admin: AdminClient, topic: str, settings: Settings, timeout: float) -> bool:
    try:
        meta = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
    except KafkaException as exc:
        raise FatalError(
            f"cannot read the metadata of topic {topic!r} from "
            f"{settings.kafka.bootstrap_servers} (CONNECTOR_KAFKA__BOOTSTRAP_SERVERS): {exc}"
        ) from exc
    if meta is None:
        return False
    err = meta.error
    if err is None:
        return bool(meta.partitions)
    if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return False
    if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise FatalError(
            f"the connector is not allowed to describe dead-letter topic {topic!r} "
            f"({err.str()}): grant DESCRIBE and WRITE on it"
        )
    raise FatalError(f"cannot read the metadata of topic {topic!r}: {err.str()}")
