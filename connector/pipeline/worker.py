"""The worker's loop, consume → decode → transform → batch → deliver → commit, and its contract.

What is committed when
----------------------
A record is *done* when all its meter events got HTTP 200 from Amberflo (``sink.mode`` s3: when
the object holding them is stored in the bucket), or its dead letter was acknowledged by the DLQ
topic.  Offsets are committed synchronously, every ``commit_interval_ms``, on revoke and on
shutdown, and only up to the lowest record of the partition that is not done
(``pipeline.checkpoint``).  Each step of the loop (``_step``):

1. Poll up to ``poll_batch`` records (those the previous step stashed go first).  librdkafka
   runs the rebalance callbacks (``pipeline.handover``) and the statistics callback inside it.
2. Map them (``_handle``): decode, map to meter events, track each record in its partition's
   state, add its events to the batches the sink's ``Batching`` asks for (``pipeline.batches``).
   A record that cannot be decoded or mapped is dead-lettered (``pipeline.letters``), one mapped
   to nothing is done at once, a customer update takes its customer's lane
   (``pipeline.customers``).  One a decoder cannot read for lack of infrastructure
   (``RetryableError``: a schema registry that is down) is never dead-lettered: its partition is
   rewound to it and fetched again after a backoff (``pipeline.holds``).  A poll is mapped only
   while the budget has room: the rest of it waits, unmapped, for the next step.
3. Close the batches that are full, lingered ``linger_ms`` or end their run: they queue for the
   ``max_in_flight`` sink threads (``pipeline.delivery``).
4. Apply the finished deliveries: events delivered make their records done, events refused
   dead-letter theirs (``Deliveries.drain``).
5. Serve the DLQ producer's callbacks: an acknowledged dead letter makes its record done.
6. Write the dead letters of S3 failure reports the watcher handed over
   (``DeadLetters.take_reports``).
7. Fetch again the held partitions whose backoff is over.
8. Once ``commit_interval_ms`` has passed: commit every watermark that moved, refresh the gauges
   (``pipeline.commits``), match the topic patterns again (``pipeline.subscription``).
9. Pause or resume consumption (``pipeline.backpressure``): beyond ``max_buffered_records``
   records, ``max_buffered_events`` events or ``max_buffered_mb`` (``pipeline.budget``), or
   while a request is backing off (429/503/5xx), every assigned partition is paused while
   polling continues.

Around the loop:

* Revoke: the partitions' in-flight work gets ``shutdown_timeout_s``, then what is done is
  committed and the rest abandoned (the next owner re-reads it; deterministic uniqueIds make the
  overlap a no-op at Amberflo).  Loss: nothing is committed (``pipeline.handover``).
* First SIGTERM/SIGINT: stop fetching, finish in-flight work within ``shutdown_timeout_s``
  counted from the signal (a revoke wait in progress shares that deadline), commit, close.
  During start-up nothing is consumed yet: the signal ends it at once and the process exits 0.
  A second signal exits at once without committing (``pipeline.stop``).
* A ``FatalError`` (bad key, unreachable broker at start, …) stops without committing more.

Only the main thread touches the consumer, the checkpoint and the DLQ producer.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import cast

from confluent_kafka import KafkaError, Message

from connector import metrics
from connector.dlq.ledger import DeadLetterLedger
from connector.dlq.publish import DeadLetterPublisher
from connector.errors import FatalError, RecordError, RetryableError
from connector.formats import Mapper, Mappers
from connector.formats.avro_registry import check_registry
from connector.kafka import ensure_topics, topic_ids
from connector.pipeline.backpressure import Backpressure
from connector.pipeline.batches import Batch, Batches
from connector.pipeline.budget import EVENT_BYTES, RECORD_BYTES, Budget
from connector.pipeline.checkpoint import Checkpoint, PartitionState
from connector.pipeline.commits import Commits
from connector.pipeline.delivery import Deliveries
from connector.pipeline.handover import Handover
from connector.pipeline.holds import Hold, Holds
from connector.pipeline.interpreter import tune_interpreter
from connector.pipeline.letters import DeadLetters, OpenReports, ReportLetters
from connector.pipeline.progress import FixedRetention, Progress
from connector.pipeline.source import Source
from connector.pipeline.stop import Stop
from connector.records import Headers, SourceRecord
from connector.settings import Settings
from connector.sinks import make_sink
from connector.sinks.base import Item, Sink

log = logging.getLogger("connector.worker")


class Worker:
    """One consumer in the group and everything downstream of it.

    ``sink``, ``dlq``, ``ledger`` and ``source`` replace the real collaborators (unit tests); a
    given ``source`` is driven by calling ``_on_assign``/``_on_revoke``/``_on_lost`` directly.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sink: Sink | None = None,
        dlq: DeadLetterPublisher | None = None,
        ledger: DeadLetterLedger | None = None,
        source: Source | None = None,
    ) -> None:
        self.settings = settings
        self._stop = Stop(settings.shutdown_timeout_s)
        self.stopping = self._stop.event
        self.checkpoint = Checkpoint()
        self.sink = sink or make_sink(settings)
        self.dlq = dlq or DeadLetterPublisher(settings, self.stopping)
        self.mappers = Mappers(settings, topic_ids(settings))
        ids = self.mappers.ids
        self.letters = DeadLetters(
            self.dlq, ledger or DeadLetterLedger(settings, ids.topic), ids.coordinates
        )
        self.progress = Progress(
            settings,
            lambda: self.checkpoint.partitions,
            None if source is None else FixedRetention({}),
        )
        self.source = source or Source(
            settings, self._on_assign, self._on_revoke, self._on_lost, self.progress.on_stats
        )
        self.reports: queue.SimpleQueue[ReportLetters | OpenReports] = queue.SimpleQueue()
        self.budget = Budget(settings.sink)
        self._deliveries = Deliveries(settings, self.sink, self.budget, self.letters)
        self._batches = Batches(self.sink.batching, self._deliveries.submit)
        self._pressure = Backpressure(
            settings.sink, self.checkpoint, self.budget, self.source, self.sink, self._deliveries
        )
        self._holds = Holds(settings.sink, self.source)
        self._commits = Commits(
            settings.kafka, self.source, self.checkpoint, self.letters, self.budget, self.progress
        )
        self._handover = Handover(
            settings.shutdown_timeout_s,
            stop=self._stop,
            checkpoint=self.checkpoint,
            batches=self._batches,
            budget=self.budget,
            pressure=self._pressure,
            holds=self._holds,
            deliveries=self._deliveries,
            letters=self.letters,
            commits=self._commits,
            source=self.source,
            dlq=self.dlq,
        )

    def install_signal_handlers(self) -> None:
        self._stop.install_handlers()

    def stop(self) -> None:
        """Begin the graceful stop: ``shutdown_timeout_s`` from now, everything is over."""
        self._stop.request()

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> bool:
        """Run until ``stopping`` is set (exit normally) or a ``FatalError`` (raised).

        False: a signal stopped the start-up, nothing was consumed (the caller may exit
        without waiting for the Kafka clients to wind down)."""
        cfg = self.settings
        if not self._stop.start(self._start):
            return False
        self._deliveries.start()
        if cfg.sink.mode == "s3" and cfg.s3.failures_poll_s:
            from connector.sinks.s3_failures import FailureWatcher

            owned = lambda: frozenset(self.checkpoint.partitions)  # noqa: E731
            FailureWatcher(cfg, owned, self.stopping, self.reports.put).start()
        tune_interpreter()
        metrics.HEALTH.unreachable_limit_s = cfg.sink.readiness_timeout_s
        metrics.LAST_COMMIT.set_to_current_time()
        metrics.LAST_INGEST.set_to_current_time()
        metrics.HEALTH.ready = True
        log.info(
            "consuming %s as group %s → %s",
            ",".join(cfg.kafka.topics),
            cfg.kafka.group_id,
            self.sink.target,
        )
        try:
            while not self.stopping.is_set():
                self._step()
        except BaseException:
            self._commits.allowed = False
            self.sink.abort.set()
            self.source.close()
            raise
        finally:
            metrics.HEALTH.ready = False
        self._handover.shutdown()
        return True

    def _start(self) -> None:
        """Check the sink's credentials and the schema registry, wait for the brokers and
        subscribe, create the DLQ topics: nothing is consumed yet."""
        cfg = self.settings
        self.sink.check(cfg.kafka.startup_timeout_s)
        if any(m.format == "avro" for m in cfg.mappings):
            check_registry(cfg, cfg.kafka.startup_timeout_s)
        self.source.start()
        ensure_topics(cfg, set(cfg.dlq_topics()))

    def _step(self) -> None:
        """One step of the loop: the numbered steps of the module docstring."""
        metrics.HEALTH.heartbeat()
        timeout = self._batches.wait_s(0.1)
        messages = self.source.poll(self.settings.kafka.poll_batch, timeout)
        pressure = self._pressure
        if pressure.stash:  # the older records first (partitions stay in order)
            messages, pressure.stash = pressure.stash + messages, []
        self._handle(messages)
        self._batches.close_due(time.monotonic())
        self._deliveries.drain()
        self.dlq.poll(0)
        if not self.reports.empty():
            self.letters.take_reports(self.reports, self.checkpoint)
        if self._holds:
            self._release_due()
        commits = self._commits
        if time.monotonic() - commits.last >= commits.interval_s:
            commits.commit()
            self.source.refresh()
        pressure.check()

    def _handle(self, messages: list[Message]) -> None:
        """Decode, map and batch one poll's messages: the per-record hot path.

        Runs once per record at 100k+ records/s, so everything loop-invariant is hoisted into
        locals and the partition state is looked up again only when the partition changes
        (rebalance callbacks run inside ``poll``, never during this loop).  Items go to the
        batch the sink's ``Batching`` says (``pipeline.batches``): without windows ``end`` is
        never reached, so the API sink's path costs one comparison more per record.
        """
        budget = self.budget
        if budget.full:  # the whole poll waits for room (backpressure pauses meanwhile)
            self._pressure.stash = messages
            return
        # Mid-poll, only value bytes count against the room (the rest of the estimate, per
        # record and per event, is added once at the end: at most a poll's worth late).
        room_events = events_room = budget.max_events - budget.events
        room_bytes = bytes_room = budget.max_bytes - budget.bytes
        batches = self._batches
        batch_for = batches.for_state
        batch = Batch(0)  # replaced at the first record of a partition we own
        end = 0  # batch.end, kept in a local
        batch_size = batches.batching.events
        mapper_for = self.mappers.for_topic
        mapper: Mapper | None = None
        get_state = self.checkpoint.get
        state: PartitionState | None = None
        holds = self._holds
        customer_update = self._deliveries.customer_update
        hold: Hold | None = None
        topic: str | None = None
        partition = -1
        records = unowned = 0
        rest = iter(messages)
        for message in rest:
            err = message.error()
            if err is not None:
                _consumer_error(err)
                continue
            headers = message.headers()
            # Without an error, a message always has its coordinates.
            offset: int = message.offset()  # type: ignore[assignment]
            value = message.value()
            record = SourceRecord(
                message.topic(),  # type: ignore[arg-type]
                message.partition(),  # type: ignore[arg-type]
                offset,
                message.timestamp()[1],
                message.key(),
                value,
                cast(Headers, tuple(headers)) if headers else (),
            )
            if record.partition != partition or record.topic != topic or mapper is None:
                topic, partition = record.topic, record.partition
                state = get_state(topic, partition)
                mapper = mapper_for(topic)
                hold = holds.get((topic, partition)) if holds else None
                if state is not None:
                    batch = batch_for(state)
                    end = batch.end
                    if hold is None or not hold.until:
                        state.mark(offset, record.timestamp_ms)  # not of dropped records
            if state is None:  # not ours (see Checkpoint.get): its owner reads it
                unowned += 1
                continue
            if hold is not None and hold.until:  # rewound: fetched again after the backoff
                continue
            records += 1
            try:
                events = mapper(record)
            except RecordError as exc:
                state.track(offset, 1)
                self.letters.reject(record, exc, state)
                continue
            except RetryableError as exc:
                hold = holds.hold(record, exc)
                continue
            if hold is not None:  # the partition reads again
                del holds[(topic, partition)]
                hold = None
            if not events:  # filtered or skipped: nothing to deliver, done at once
                state.skip(offset)
                continue
            if type(events) is not list:  # a CustomerUpdate: its own ordered path (customers.py)
                customer_update(events, record, state)
                continue
            n = len(events)
            state.track(offset, n)
            if offset >= end:  # windowed: the record starts the next run
                batch = batches.start_window(state, offset)
                end = batch.end
            if not batch:
                batch.started = time.monotonic()
            room_events -= n
            if value:
                room_bytes -= len(value)
            for event in events:
                batch.append(Item(event, record, state))
                if len(batch) >= batch_size:
                    batch = batches.close(batch, state)
            if room_events <= 0 or room_bytes <= 0:  # the rest waits for room (backpressure)
                self._pressure.stash = list(rest)
                break
        if records:
            metrics.RECORDS.inc(records)
            mapped = events_room - room_events  # (records without events count, generously)
            nbytes = bytes_room - room_bytes + RECORD_BYTES * records + EVENT_BYTES * mapped
            budget.add(mapped, nbytes)
        if unowned:
            log.warning("dropped %d records of partitions not assigned to this worker", unowned)

    def _release_due(self) -> None:
        """Partitions whose decoder backoff is over are fetched again (``pipeline.holds``)."""
        self._holds.release_due()

    # -- rebalance callbacks (``pipeline.handover``) ---------------------------------------
    def _on_assign(self, parts: list[tuple[str, int]]) -> None:
        self._handover.assign(parts)

    def _on_revoke(self, parts: list[tuple[str, int]]) -> None:
        self._handover.revoke(parts)

    def _on_lost(self, parts: list[tuple[str, int]]) -> None:
        self._handover.lose(parts)


def _consumer_error(err: KafkaError) -> None:
    if err.code() == KafkaError._PARTITION_EOF:
        return
    if err.fatal():
        raise FatalError(f"Kafka consumer error: {err.str()}")
    log.warning("consumer error: %s", err.str())
