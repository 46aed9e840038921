"""The Kafka side: a confluent-kafka consumer with manual, synchronous commits.

Offsets are never committed automatically (``enable.auto.commit=false``): the worker commits
the checkpoint's watermarks through ``commit()``.  Rebalance callbacks are forwarded to the
worker, which decides what is committed on revoke and that nothing is on loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from connector import metrics
from connector.errors import FatalError
from connector.kafka import CLIENT_LOG, consumer_config
from connector.pipeline.subscription import Subscription
from connector.settings import Settings

log = logging.getLogger("connector.source")

Rebalance = Callable[[list[tuple[str, int]]], None]


class Source:
    def __init__(
        self,
        settings: Settings,
        on_assign: Rebalance,
        on_revoke: Rebalance,
        on_lost: Rebalance,
        on_stats: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        # librdkafka statistics (consumer lag per partition) every 5 s, parsed on the main
        # thread inside consume(): a few hundred µs each time (the user's
        # CONNECTOR_KAFKA__CONSUMER, inside consumer_config, may change the interval).
        stats = {"statistics.interval.ms": 5000, "stats_cb": on_stats} if on_stats else {}
        self._conf: dict[str, Any] = {
            **stats,
            **consumer_config(settings),
            "error_cb": self._on_error,
        }
        self._callbacks = (on_assign, on_revoke, on_lost)
        self.subscription = Subscription(settings)
        self._next_refresh = 0.0
        self.consumer = Consumer(self._conf)
        self.paused = False
        self.held: set[tuple[str, int]] = set()  # rewound by hold(), until release()
        self.fatal: KafkaError | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Wait for the brokers (``startup_timeout_s``), check the topics, subscribe.

        librdkafka's metadata call blocks in C, where no signal handler runs: it runs on a
        helper thread while this one waits in Python, so a signal is acted on at once."""
        k = self._settings.kafka
        retrying = Retrying(
            retry=retry_if_exception_type(KafkaException),
            stop=stop_after_delay(k.startup_timeout_s),
            reraise=True,
        )
        try:
            meta = retrying(
                _interruptible, self.consumer.list_topics, min(5.0, k.startup_timeout_s)
            )
        except KafkaException as exc:
            raise FatalError(
                f"cannot reach Kafka at {k.bootstrap_servers} "
                f"(CONNECTOR_KAFKA__BOOTSTRAP_SERVERS) for {k.startup_timeout_s:.0f}s: "
                f"{exc.args[0] if exc.args else exc}"
            ) from exc
        missing = [t for t in k.topics if not t.startswith("^") and t not in meta.topics]
        if missing:
            raise FatalError(
                f"topic(s) {', '.join(missing)} do not exist on {k.bootstrap_servers} "
                "(CONNECTOR_KAFKA__TOPICS)"
            )
        self.subscription.warn_about_literals()
        self._subscribe(list(meta.topics))
        self._next_refresh = time.monotonic() + k.pattern_refresh_s

    def refresh(self) -> None:
        """Apply the topic patterns to the cluster's topics again, every ``pattern_refresh_s``
        (see ``subscription``); a broker that does not answer keeps the subscription as is."""
        if not self.subscription.patterns or time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + self._settings.kafka.pattern_refresh_s
        try:
            meta = self.consumer.list_topics(timeout=5.0)
        except KafkaException as exc:
            log.warning("reading the topic list failed (the subscription stays): %s", exc)
            return
        self._subscribe(list(meta.topics))

    def _subscribe(self, existing: list[str]) -> None:
        topics = self.subscription.changed(existing)
        if topics is None:
            return
        if topics:
            assign, revoke, lost = self._callbacks
            self.consumer.subscribe(
                topics,
                on_assign=lambda _c, parts: assign(_keys(parts)),
                on_revoke=lambda _c, parts: revoke(_keys(parts)),
                on_lost=lambda _c, parts: lost(_keys(parts)),
            )
        elif self.subscription.current:
            self.consumer.unsubscribe()
        self.subscription.current = topics

    def close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)

    # -- data -----------------------------------------------------------------------------
    def poll(self, max_records: int, timeout: float) -> list[Message]:
        messages: list[Message] = self.consumer.consume(max_records, timeout)
        if self.fatal is not None:
            raise FatalError(f"Kafka client failed: {self.fatal.str()}")
        return messages

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
        CLIENT_LOG.warning("kafka: %s", err.str())  # repeats a few times a second: filtered

    # -- flow control ---------------------------------------------------------------------
    def pause(self) -> None:
        parts = self.consumer.assignment()
        if parts:
            self.consumer.pause(parts)
        if not self.paused:
            log.info("pausing consumption (backpressure)")
        self.paused = True
        metrics.PAUSED.set(1)

    def resume(self) -> None:
        """Resume every assigned partition except the held ones."""
        held = self.held
        parts = [p for p in self.consumer.assignment() if (p.topic, p.partition) not in held]
        if parts:
            self.consumer.resume(parts)
        if self.paused:
            log.info("resuming consumption")
        self.paused = False
        metrics.PAUSED.set(0)

    def hold(self, topic: str, partition: int, offset: int) -> None:
        """Stop fetching one partition and rewind it to ``offset``: what was fetched from there
        on is dropped and fetched again after ``release``.  A rewind that fails is fatal:
        consuming on would skip the records from ``offset``."""
        tp = TopicPartition(topic, partition, offset)
        try:
            self.consumer.pause([tp])
            self.consumer.seek(tp)
        except KafkaException as exc:
            raise FatalError(
                f"cannot rewind {topic}[{partition}] to offset {offset}: {exc.args[0]}"
            ) from exc
        self.held.add((topic, partition))

    def release(self, topic: str, partition: int) -> None:
        """Fetch a held partition again (from where ``hold`` rewound it), unless everything
        is paused for backpressure (then ``resume`` does it)."""
        self.held.discard((topic, partition))
        if not self.paused:
            self.consumer.resume([TopicPartition(topic, partition)])

    def forget(self, parts: list[tuple[str, int]]) -> None:
        """Revoked or lost partitions are no longer held (a new assignment starts fresh)."""
        self.held.difference_update(parts)

    def commit(self, offsets: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        """Synchronously commit; returns what the broker stored.

        A refused request (logged) stores nothing; a partition the broker refused within an
        accepted request (``commit()`` answers per partition) is logged and counted in
        ``amberflo_connector_commit_partition_errors_total``.  Either is retried at the next
        commit: the watermark stays where it was.
        """
        if not offsets:
            return []
        try:
            answer = self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=False
            )
        except KafkaException as exc:
            metrics.COMMITS.labels(result="failed").inc()
            log.warning("offset commit failed (will retry): %s", exc)
            return []
        metrics.COMMITS.labels(result="ok").inc()
        refused = {
            (tp.topic, tp.partition): tp.error for tp in answer or () if tp.error is not None
        }
        for (topic, partition), err in refused.items():
            name = err.name() if isinstance(err, KafkaError) else "error"
            metrics.COMMIT_PARTITION_ERRORS.labels(error=name).inc()
            log.warning(
                "offset commit of %s[%d] refused (will retry): %s",
                topic,
                partition,
                err.str() if isinstance(err, KafkaError) else err,
            )
        if len(refused) < len(offsets):
            metrics.LAST_COMMIT.set_to_current_time()
        return [o for o in offsets if (o[0], o[1]) not in refused]


def _interruptible(list_topics: Callable[..., Any], timeout: float) -> Any:
    """``list_topics(timeout=timeout)`` on a daemon thread, waited for in short Python waits
    (a signal handler raising here leaves the thread to finish on its own)."""
    done = threading.Event()
    result: list[Any] = []

    def call() -> None:
        try:
            result.append(list_topics(timeout=timeout))
        except BaseException as exc:  # handed to the waiting thread
            result.append(exc)
        done.set()

    threading.Thread(target=call, name="metadata", daemon=True).start()
    while not done.wait(0.1):
        pass
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _keys(parts: list[TopicPartition]) -> list[tuple[str, int]]:
    return [(p.topic, p.partition) for p in parts]
