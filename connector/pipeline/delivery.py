"""The sink threads: ``sink.max_in_flight`` daemon threads run ``Sink.deliver`` on the batches
the worker queues, and hand every outcome back to the main thread through a queue.

They touch neither the consumer nor the checkpoint (only the main thread does, when it
drains the outcomes): a thread releases the batch's share of the memory budget, observes the
delivery delay, and passes on whatever ``deliver`` raised for the main thread to decide.
"""

from __future__ import annotations

import queue
import time

from connector import metrics
from connector.pipeline.batches import Batch
from connector.pipeline.budget import Budget
from connector.pipeline.customers import CustomerDone
from connector.sinks.base import Item, Outcome, Sink

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
