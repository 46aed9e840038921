"""Kafka client plumbing every command shares: client configurations, topic creation, and
reading topics without joining a group.

The connector's consumer and DLQ producer configurations are built here, once, from the
settings (``connector.settings.librdkafka`` builds both clients from them when the settings are
loaded, so that an unknown or invalid librdkafka property is a configuration error before
anything starts).  Properties the delivery contract depends on cannot be overridden
(``settings.PROTECTED_CONSUMER`` / ``PROTECTED_PRODUCER``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connector.errors import FatalError
from connector.logs import Repeats

if TYPE_CHECKING:
    from connector.settings import LibrdkafkaValue, Settings

SECURITY_PREFIXES = ("security.", "sasl.", "ssl.", "client.dns.", "socket.", "broker.address.")
DLQ_MESSAGE_MAX_BYTES = 16 * 1024 * 1024 + 64 * 1024
"""Default ``message.max.bytes`` of the DLQ producer: a dead letter is its record plus headers,
and a record the broker accepted must not be too large to dead-letter (override with
``CONNECTOR_KAFKA__PRODUCER``; the DLQ topic's ``max.message.bytes`` must allow it too)."""


CLIENT_LOG = logging.getLogger("connector.kafka.client")
"""librdkafka's own log lines, through Python logging (levels, ``CONNECTOR_LOG__FORMAT``)
instead of straight to stderr; a failure it repeats (a broker refusing connections, several
times a second) shows once a minute with a count.  They are served by the client's poll, so
a command that fails at start-up ends with its one line, not hundreds of librdkafka's."""
CLIENT_LOG.addFilter(Repeats())


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection properties shared by every client we make (consumer props' security part),
    and the logger of librdkafka's lines (``CLIENT_LOG``)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "logger": CLIENT_LOG,
    }
    for key, value in settings.kafka.consumer.items():
        if key.startswith(SECURITY_PREFIXES):
            conf[key] = value
    return conf


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The source consumer's configuration (without callbacks).

    Offsets are stored and committed only by the worker (``enable.auto.*`` false), and only
    committed transactions are read (``isolation.level``): usage of an aborted transaction
    must never be billed.  The user's ``CONNECTOR_KAFKA__CONSUMER`` comes last but cannot hold
    those (settings validation refuses them).
    """
    k = settings.kafka
    return {
        **client_config(settings),
        "group.id": k.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": k.assignment_strategy,
        "queued.max.messages.kbytes": k.fetch_queue_kbytes,
        # A fetch waits at most this long for data (librdkafka's default is 500 ms).  A
        # broker that holds a fetch until this timeout even when data is there (Tansu
        # does) otherwise adds up to 500 ms to every record's delay: p99 at 20k
        # records/s went 469 → 272 ms.  Idle, it only means 10 fetches/s per broker.
        "fetch.wait.max.ms": 100,
        # Once the prefetch queue holds ``fetch_queue_kbytes``, librdkafka postpones the
        # next fetch of every partition by this much (its default: 1000 ms).  A worker
        # slower than the fetcher (every real one) then drains the queue and sits idle
        # until the pause ends: 78k records/s at most here, 186k with 20 ms.
        "fetch.queue.backoff.ms": 20,
        "client.id": "amberflo-connector",
        **k.consumer,
    }


def dlq_producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """The producer that writes dead letters (and republishes them in ``dlq replay``).

    ``acks=all`` and idempotence are what "a dead letter is acknowledged" means; the user's
    ``CONNECTOR_KAFKA__PRODUCER`` comes last but cannot change them.
    """
    return {
        **client_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 60_000,
        "message.max.bytes": DLQ_MESSAGE_MAX_BYTES,
        "client.id": client_id,
        **settings.kafka.producer,
    }


def produce_queued(
    producer: Producer,
    topic: str,
    *,
    stop: Callable[[], bool] = lambda: False,
    wait_s: float = 0.05,
    **kwargs: Any,
) -> bool:
    """``producer.produce(topic, **kwargs)``, serving delivery callbacks for ``wait_s`` each
    time the local queue is full, until the record is queued (True) or ``stop()`` (False:
    not queued).  Every other produce error is raised as it is."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            return True
        except BufferError:
            if stop():
                return False
            producer.poll(wait_s)


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


def topic_ids(settings: Settings) -> TopicIds | None:
    """The ``topic_key`` of derived uniqueIds (``Mappers``) for these settings."""
    return TopicIds(settings) if settings.transform.unique_id_topic_ids else None


class TopicIds:
    """topic name → the ``<topic>`` part of derived uniqueIds' coordinates: ``name@<topic id>``
    where the broker reports a topic id (KIP-516; an all-zero id means it does not), else the
    name (``connector.formats.ids``).  Asked once per topic, at its first record with a
    derived id; a broker that cannot be asked for ``startup_timeout_s`` stops the connector
    (deriving ids without the topic id would count re-read records twice)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: AdminClient | None = None

    def __call__(self, topic: str) -> str:
        if self._admin is None:
            self._admin = AdminClient(
                {**client_config(self._settings), "allow.auto.create.topics": False}
            )
        k = self._settings.kafka
        deadline = time.monotonic() + k.startup_timeout_s
        while True:
            future = self._admin.describe_topics(TopicCollection([topic]), request_timeout=10)
            try:
                described = future[topic].result(15)
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() in _DENIED:
                    raise FatalError(
                        f"the connector is not allowed to describe topic {topic!r} "
                        f"({err.str()}): grant DESCRIBE on it"
                    ) from exc
                if time.monotonic() >= deadline:
                    raise FatalError(
                        f"cannot read the topic id of {topic!r} from {k.bootstrap_servers} "
                        f"(CONNECTOR_KAFKA__BOOTSTRAP_SERVERS) for {k.startup_timeout_s:.0f}s: "
                        f"{exc}"
                    ) from exc
                time.sleep(0.5)
        tid = described.topic_id
        if tid is None:
            return topic
        high = tid.get_most_significant_bits() & 0xFFFF_FFFF_FFFF_FFFF
        low = tid.get_least_significant_bits() & 0xFFFF_FFFF_FFFF_FFFF
        if not high and not low:
            return topic
        return f"{topic}@{uuid.UUID(int=(high << 64) | low)}"


# -- reading outside the consumer group (dlq tools, previews, reconcile, S3 failure reports) --
#
# Such a reader never joins a group and never commits: partitions are ``assign()``-ed
# directly.  The end of a topic is where a poll stays empty for ``idle_s`` seconds, not the
# broker's end offsets, which some brokers (Tansu) report wrongly.

IDLE_CAP_FACTOR = 5
"""Longest wait for a partition that never reports its end, in units of ``idle_s``."""


def open_reader(
    settings: Settings, group_id: str, extra: Mapping[str, LibrdkafkaValue] | None = None
) -> Consumer:
    """A consumer that never commits (use it with ``assign()``); ``extra`` adds or overrides
    librdkafka properties."""
    return Consumer(
        {
            **client_config(settings),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "client.id": "amberflo-connector-dlq-tool",
            "enable.partition.eof": True,
            **(extra or {}),
        }
    )


def partitions_of(consumer: Consumer, topic: str) -> list[int] | None:
    """The partition ids of ``topic``, or None when it does not exist."""
    try:
        meta = consumer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        why = err.str() if isinstance(err, KafkaError) else str(exc)
        raise FatalError(
            f"cannot read the metadata of topic {topic!r} ({why}): is Kafka reachable at "
            "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS?"
        ) from exc
    t = meta.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        return None
    return sorted(t.partitions)


def scan(
    consumer: Consumer,
    idle_s: float,
    stop: Callable[[], bool],
    settled: Callable[[], set[tuple[str, int]]] = set,
) -> Iterator[Message]:
    """Messages of the current assignment until the end, or until ``stop()``.

    The end is a poll staying empty for ``idle_s`` once every assigned partition (except those
    in ``settled()``, e.g. paused ones) has reported end-of-partition at least once, so a slow
    first fetch is not mistaken for an empty topic.  End-of-partition alone is not trusted (it
    follows the broker's end offset, which Tansu reports too low); without it the wait is
    capped at ``IDLE_CAP_FACTOR × idle_s``.
    """
    last = time.monotonic()
    at_end: set[tuple[str, int]] = set()
    while not stop():
        batch = consumer.consume(500, min(idle_s, 0.2))
        got = False
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add((str(msg.topic()), int(msg.partition() or 0)))
                    continue
                raise FatalError(f"reading {msg.topic()} failed: {err.str()}")
            got = True
            yield msg
        now = time.monotonic()
        if got:
            last = now
            continue
        idle = now - last
        if idle < idle_s:
            continue
        waiting = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        if not (waiting - at_end - settled()) or idle >= IDLE_CAP_FACTOR * idle_s:
            return
