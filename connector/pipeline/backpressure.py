"""Backpressure: what the worker holds bounds what it fetches.

* Every assigned partition is paused while the checkpoint holds ``max_buffered_records``
  records not done, while the budget (``pipeline.budget``: ``max_buffered_events`` events,
  ``max_buffered_mb``) is full, while records wait in the stash, or while the sink or a
  customer lane is backing off (429/503/5xx).  Polling goes on meanwhile (the consumer stays
  in the group and its rebalance callbacks run).  The events limit also bounds the delivery
  queue: a queued batch's events are held until the sink answers.
* It resumes once records are at most half the limit and the budget at most half full, with
  nothing stashed and nothing backing off.
* The stash: a poll is mapped only while the budget has room; the rest of it waits here,
  unmapped, and is mapped first at the next step (partitions stay in order).  What waits of a
  partition that is revoked or lost meanwhile is dropped: its next owner reads it.
* librdkafka starts a newly assigned partition unpaused: an assignment while paused pauses
  again at the next check.

Only the worker's main thread uses it.
"""

from __future__ import annotations

from confluent_kafka import Message

from connector.pipeline.budget import Budget
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.delivery import Deliveries
from connector.pipeline.source import Source
from connector.settings import SinkSettings
from connector.sinks.base import Sink


class Backpressure:
    def __init__(
        self,
        cfg: SinkSettings,
        checkpoint: Checkpoint,
        budget: Budget,
        source: Source,
        sink: Sink,
        deliveries: Deliveries,
    ) -> None:
        self.stash: list[Message] = []  # the rest of a poll that did not fit the budget
        self._limit = cfg.max_buffered_records
        self._checkpoint = checkpoint
        self._budget = budget
        self._source = source
        self._sink = sink
        self._deliveries = deliveries  # its customer lanes, once started
        self._repause = False

    def check(self) -> None:
        """Pause or resume consumption (once per step of the loop)."""
        limit = self._limit
        buffered = self._checkpoint.pending_records
        customers = self._deliveries.customers
        stuck = self._sink.backing_off or (customers and customers.backing_off)
        if buffered >= limit or self._budget.full or self.stash or stuck:
            if not self._source.paused or self._repause:
                self._source.pause()
                self._repause = False
        elif self._source.paused and buffered <= limit // 2 and self._budget.half_empty:
            self._source.resume()

    def assigned(self) -> None:
        """Partitions were assigned: paused now, they are paused too at the next check."""
        if self._source.paused:
            self._repause = True

    def forget(self, parts: list[tuple[str, int]]) -> None:
        """Drop what waits of revoked or lost partitions (read under the old assignment)."""
        if self.stash:
            gone = set(parts)
            self.stash = [m for m in self.stash if (m.topic(), m.partition()) not in gone]
