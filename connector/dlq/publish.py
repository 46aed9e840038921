"""The dead-letter topic: publishing (here), reading back (``view``), inspecting (``inspect``)
and replaying (``replay``).

Contract: ``DeadLetterPublisher.publish(letter, on_ack, wanted, partition)`` calls
``on_ack(dlq_offset)`` only after the broker acknowledged the dead letter (acks=all,
idempotent producer).  A failed delivery is produced again after a pause while ``wanted()``
holds; the record stays pending meanwhile, so its offset is never committed before its dead
letter is safe.  Once its partition is revoked (``wanted()`` false) a failed dead letter is
dropped: the partition's new owner reads the record again and dead-letters it itself.

A dead letter keeps the original key, value, headers and timestamp unchanged and adds the
error/source headers of the configured style (``amberflo`` or Kafka Connect's ``connect``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connector import __version__, metrics
from connector.errors import FatalError
from connector.formats.ids import ORIGIN_HEADER
from connector.kafka import dlq_producer_config, ensure_topics, produce_queued
from connector.records import DeadLetter, Headers
from connector.settings import Settings
from connector.timefmt import ms_to_iso

log = logging.getLogger("connector.dlq")

AMBERFLO_PREFIX = "amberflo."
CONNECT_PREFIX = "__connect.errors."
AMBERFLO_ERROR_HEADERS = frozenset(
    AMBERFLO_PREFIX + name
    for name in (
        "error.stage",
        "error.class",
        "error.message",
        "error.http_status",
        "source.topic",
        "source.partition",
        "source.offset",
        "source.timestamp",
        "failed_at",
        "connector.version",
    )
)
"""Every header ``error_headers`` adds in the ``amberflo`` style (``dlq replay`` drops them)."""
CONNECT_STAGES = {"decode": "VALUE_CONVERTER", "transform": "TRANSFORMATION", "sink": "TASK_PUT"}
"""Kafka Connect's ``Stage`` name for each of our stages."""
ERRORS_MODULE = "connector.errors"
PERMANENT_PRODUCE_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._INVALID_ARG,
    }
)
"""Produce errors that no retry can fix: the connector stops (nothing more is committed)."""


def error_headers(letter: DeadLetter, style: str, group_id: str, now_ms: int) -> Headers:
    """The headers added to a dead letter (values UTF-8), in a fixed order.

    ``amberflo`` style: ``amberflo.error.{stage,class,message}``, ``amberflo.error.http_status``
    (only when there was a response), ``amberflo.source.{topic,partition,offset,timestamp}``,
    ``amberflo.failed_at`` (ISO-8601 UTC, from ``now_ms``), ``amberflo.connector.version``.
    ``connect`` style: Kafka Connect's ten ``__connect.errors.*`` headers (the connector name
    is the group id, the task id ``0``; there is no stack trace, only ``<class>: <message>``).
    Both styles then add ``amberflo.origin``, the coordinates the record's uniqueIds derive
    from (topic id included), unless the record carries one already: ``dlq replay`` keeps it,
    so a replayed record derives the same ids, even replayed ``--to`` another topic.
    """
    r = letter.record
    if style == "connect":
        p = CONNECT_PREFIX
        qualified = (
            letter.error_class
            if "." in letter.error_class
            else f"{ERRORS_MODULE}.{letter.error_class}"
        )
        pairs: list[tuple[str, str | None]] = [
            (p + "topic", r.topic),
            (p + "partition", str(r.partition)),
            (p + "offset", str(r.offset)),
            (p + "connector.name", group_id),
            (p + "task.id", "0"),
            (p + "stage", CONNECT_STAGES.get(letter.stage, "TASK_PUT")),
            (p + "class.name", f"connector.{letter.stage}"),
            (p + "exception.class.name", qualified),
            (p + "exception.message", letter.message),
            (p + "exception.stacktrace", f"{qualified}: {letter.message}"),
        ]
    else:
        p = AMBERFLO_PREFIX
        pairs = [
            (p + "error.stage", letter.stage),
            (p + "error.class", letter.error_class),
            (p + "error.message", letter.message),
        ]
        if letter.http_status is not None:
            pairs.append((p + "error.http_status", str(letter.http_status)))
        pairs += [
            (p + "source.topic", r.topic),
            (p + "source.partition", str(r.partition)),
            (p + "source.offset", str(r.offset)),
            (p + "source.timestamp", str(r.timestamp_ms)),
            (p + "failed_at", ms_to_iso(now_ms)),
            (p + "connector.version", __version__),
        ]
    if letter.origin is not None and r.header(ORIGIN_HEADER) is None:
        pairs.append((ORIGIN_HEADER, letter.origin))
    return tuple((k, v.encode() if v is not None else None) for k, v in pairs)


@dataclass(frozen=True, slots=True)
class _Job:
    letter: DeadLetter
    on_ack: Callable[[int], None]
    wanted: Callable[[], bool]
    partition: int | None


class DeadLetterPublisher:
    """Writes dead letters; ``on_ack`` runs only once the broker acknowledged one.

    Failures never lose a dead letter and never let its record be committed:

    * a transient failure (broker down, timeout, leader change…) is logged, counted in
      ``amberflo_connector_dead_letter_failures_total`` and the dead letter is produced again
      after ``RETRY_PAUSE_S`` — for as long as it takes; its record stays pending meanwhile;
    * a permanent one (``PERMANENT_PRODUCE_ERRORS``: too large, not authorized…) or a fatal
      producer error raises ``FatalError`` from ``publish``/``poll``: the connector stops
      without committing, as for a bad API key.

    Only the worker's main thread uses it (``publish``, ``poll``, ``flush``).
    """

    RETRY_PAUSE_S = 1.0

    def __init__(self, settings: Settings, stopping: threading.Event | None = None) -> None:
        self._settings = settings
        self._stopping = stopping or threading.Event()
        self._producer = Producer(dlq_producer_config(settings, "amberflo-connector-dlq"))
        self._known: set[str] = set()
        self._retry: list[tuple[float, _Job]] = []
        self.in_flight = 0

    def publish(
        self,
        letter: DeadLetter,
        on_ack: Callable[[int], None],
        wanted: Callable[[], bool] = lambda: True,
        partition: int | None = None,
    ) -> None:
        """Hand a dead letter to the producer (creating its topic when missing), to
        ``partition`` of the DLQ topic when given; ``on_ack`` gets the letter's DLQ offset."""
        self._produce(_Job(letter, on_ack, wanted, partition))

    def _produce(self, job: _Job) -> None:
        letter = job.letter
        topic = self._settings.dlq_topic_for(letter.record.topic)
        if topic not in self._known:
            ensure_topics(self._settings, {topic})
            self._known.add(topic)
        r = letter.record
        headers = list(r.headers) + list(
            error_headers(
                letter,
                self._settings.dlq.header_style,
                self._settings.kafka.group_id,
                int(time.time() * 1000),
            )
        )

        def delivered(err: KafkaError | None, msg: Message) -> None:
            self.in_flight -= 1
            if err is None:
                metrics.DEAD_LETTERS.labels(stage=letter.stage).inc()
                job.on_ack(int(msg.offset() or 0))
                return
            self._failed(job, err)

        kwargs: dict[str, Any] = {
            "key": r.key,
            "value": r.value,
            "headers": headers,
            "on_delivery": delivered,
        }
        if job.partition is not None:
            kwargs["partition"] = job.partition
        if r.timestamp_ms > 0:
            kwargs["timestamp"] = r.timestamp_ms
        try:
            queued = produce_queued(self._producer, topic, stop=self._stopping.is_set, **kwargs)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not isinstance(err, KafkaError):
                raise
            self._failed(job, err)
            return
        if not queued:  # shutting down with the producer's queue full: not acknowledged
            self._retry.append((time.monotonic() + self.RETRY_PAUSE_S, job))
            return
        self.in_flight += 1

    def _failed(self, job: _Job, err: KafkaError) -> None:
        r = job.letter.record
        topic = self._settings.dlq_topic_for(r.topic)
        metrics.DEAD_LETTER_FAILURES.inc()
        if err.fatal() or err.code() in PERMANENT_PRODUCE_ERRORS:
            raise FatalError(
                f"cannot write the dead letter of {r.topic}/{r.partition}@{r.offset} to "
                f"{topic!r}: {err.str()} (check the DLQ topic and CONNECTOR_KAFKA__PRODUCER; "
                "nothing more is committed)"
            )
        log.error(
            "dead letter for %s/%d@%d not acknowledged by %r (%s); retrying, its offset is not "
            "committed meanwhile",
            r.topic,
            r.partition,
            r.offset,
            topic,
            err.str(),
        )
        self._retry.append((time.monotonic() + self.RETRY_PAUSE_S, job))

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks and re-publish dead letters whose delivery failed."""
        self._producer.poll(timeout)
        if self._retry:
            now = time.monotonic()
            due = [x for x in self._retry if x[0] <= now]
            self._retry = [x for x in self._retry if x[0] > now]
            for _, job in due:
                if job.wanted():
                    self._produce(job)
                else:
                    r = job.letter.record
                    log.info(
                        "dropped the unacknowledged dead letter of %s/%d@%d: the partition was "
                        "revoked, its new owner reads the record again",
                        r.topic,
                        r.partition,
                        r.offset,
                    )

    @property
    def pending(self) -> int:
        """Dead letters handed to ``publish`` and not acknowledged yet."""
        return self.in_flight + len(self._retry)

    def flush(self, timeout: float) -> bool:
        """Wait for every dead letter to be acknowledged; False if some are still pending."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.poll(0.05)
        return self.pending == 0
