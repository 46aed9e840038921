"""Delivery: the sink threads, and the main thread's side of them (``Deliveries``).

``sink.max_in_flight`` daemon threads run ``Sink.deliver`` on the batches the worker queues
(``submit``) and hand every outcome back through a queue.  They touch neither the consumer nor
the checkpoint: a thread releases the batch's share of the memory budget, observes the delivery
delay, and passes on whatever ``deliver`` raised for the main thread to decide.  Customer
updates take their own ordered lanes (``pipeline.customers``) and report to the same queue.

The main thread applies the outcomes (``drain``): an event delivered is a part of its record
done (``PartitionState.done``), an event refused is its record's dead letter (unless the
partition was revoked meanwhile: its new owner processes the record), an exception from a
thread is raised here (a ``FatalError`` stops the worker).
"""

from __future__ import annotations

import queue
import threading
import time

from connector import metrics
from connector.errors import RecordError
from connector.pipeline.batches import Batch
from connector.pipeline.budget import Budget
from connector.pipeline.checkpoint import PartitionState
from connector.pipeline.customers import CustomerDone, CustomerSync
from connector.pipeline.letters import DeadLetters
from connector.records import CustomerUpdate, MeterEvent, SourceRecord
from connector.settings import Settings
from connector.sinks.base import Abandoned, Item, Outcome, Sink

Result = Outcome | CustomerDone | BaseException
"""What the main thread drains: a batch's outcome, a customer update's, or an exception."""


def deliver_loop(
    sink: Sink,
    jobs: queue.SimpleQueue[Batch | None],
    done: queue.SimpleQueue[Result],
    budget: Budget,
) -> None:
    """Deliver batches from ``jobs`` until a None, each outcome (or exception) into ``done``."""
    while True:
        items = jobs.get()
        if items is None:
            return
        result: Result
        try:
            result = sink.deliver(items)
            observe_delay(result.delivered)
        except BaseException as exc:  # handed to the main thread, which decides
            result = exc
        budget.release(len(items))
        done.put(result)


def observe_delay(delivered: list[Item]) -> None:
    """One delay observation per acknowledged request, for its oldest record (called in the
    sink thread right after the acknowledgement; records without a timestamp are skipped)."""
    if delivered:
        oldest = min(item.record.timestamp_ms for item in delivered)
        if oldest > 0:
            metrics.DELAY.observe(time.time() - oldest / 1000)


class Deliveries:
    """The sink threads and the customer lanes, seen from the main thread (the only one that
    calls these methods)."""

    def __init__(self, settings: Settings, sink: Sink, budget: Budget, letters: DeadLetters):
        self._settings = settings
        self._sink = sink
        self._letters = letters
        self.jobs: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.customers: CustomerSync | None = None  # started by the first customer update
        self._threads = [
            threading.Thread(
                target=deliver_loop,
                args=(sink, self.jobs, self.done, budget),
                name=f"sink-{i}",
                daemon=True,
            )
            for i in range(settings.sink.max_in_flight)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, batch: Batch) -> None:
        self.jobs.put(batch)

    def customer_update(
        self, update: CustomerUpdate | list[MeterEvent], record: SourceRecord, state: PartitionState
    ) -> None:
        """Track the record and queue its update on the customer's ordered lane."""
        assert isinstance(update, CustomerUpdate), type(update)  # what a mapper may return
        if self.customers is None:
            self.customers = CustomerSync(self._settings, self._sink.abort, self.done.put)
        state.track(record.offset, 1)
        self.customers.submit(update, record, state)

    def drain(self, wait: float = 0.0) -> None:
        """Apply finished deliveries to the checkpoint; re-raise a delivery's FatalError."""
        block = wait > 0
        while True:
            try:
                result = self.done.get(block, wait) if block else self.done.get_nowait()
            except queue.Empty:
                return
            block = False
            if isinstance(result, CustomerDone):
                self._customer_done(result)
                continue
            if isinstance(result, Abandoned):
                continue
            if isinstance(result, BaseException):
                raise result
            metrics.EVENTS.inc(len(result.delivered))
            for item in result.delivered:
                item.state.done(item.record.offset)
            for item, error in result.rejected:
                if item.state.active:  # revoked meanwhile: the new owner processes the record
                    self._letters.reject(item.record, error, item.state)

    def _customer_done(self, done: CustomerDone) -> None:
        if done.error is None:
            done.state.done(done.record.offset)
        elif isinstance(done.error, RecordError):  # Amberflo refused it: a dead letter
            if done.state.active:
                self._letters.reject(done.record, done.error, done.state)
        else:
            raise done.error

    def abort(self) -> None:
        """Shutdown: retries in progress give up (``Abandoned``: nothing of theirs is done) and
        the customer lanes exit once their current update is over (queued ones are dropped)."""
        self._sink.abort.set()
        if self.customers is not None:
            self.customers.stop()

    def end(self) -> None:
        """Let the sink threads return once the batches queued before are delivered."""
        for _ in self._threads:
            self.jobs.put(None)
