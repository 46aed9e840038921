"""What every sink shares: the unit of work and the answer a delivery gives.

Contract of a sink's ``deliver(items) -> Outcome``: it blocks until every item is either
*delivered* (the destination accepted it durably) or *rejected* (the destination refused that
very event: it becomes a dead letter), and never returns with an item in neither list.
Transient failures are retried inside; a failure no retry can fix raises ``FatalError``, and
a shutdown that interrupts the retries raises ``Abandoned`` (nothing of the batch is done).

A sink also chooses how the worker batches for it (``Batching``): the API sink takes any mix
of partitions; the S3 sink needs one partition's records per batch, from an aligned run of
offsets, so that a batch and its object key are a function of the offsets alone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from connector.errors import Abandoned, RecordError
from connector.pipeline.checkpoint import PartitionState
from connector.records import MeterEvent, SourceRecord

__all__ = ["Abandoned", "Batching", "Item", "Outcome", "Sink"]


@dataclass(slots=True)
class Item:
    """One meter event on its way, with the record it came from (for the watermark and DLQ)."""

    event: MeterEvent
    record: SourceRecord
    state: PartitionState


@dataclass(slots=True)
class Outcome:
    delivered: list[Item] = field(default_factory=list)
    rejected: list[tuple[Item, RecordError]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Batching:
    """How the worker assembles the batches handed to ``deliver``.

    ``events``: most items per batch; ``linger_s``: longest wait for a batch to fill.
    ``window`` None: a batch mixes every partition.  ``window`` N: a batch holds items of one
    partition only, in offset order, all from records whose offsets fall in one aligned run
    ``[k·N, (k+1)·N)``; the worker closes a batch when the run ends, when it holds ``events``
    items, after ``linger_s``, and on revoke or shutdown.
    """

    events: int
    linger_s: float
    window: int | None = None


class Sink(Protocol):
    """What the worker needs of a destination (``api.Sink``, ``s3.S3Sink``)."""

    abort: threading.Event
    batching: Batching

    @property
    def backing_off(self) -> int:
        """Deliveries waiting to retry; the worker pauses consumption while it is not 0."""
        ...

    @property
    def target(self) -> str:
        """Where events go, for the log (a URL)."""
        ...

    def check(self, timeout_s: float) -> None:
        """Fail fast before consuming: ``FatalError`` naming the setting to fix."""
        ...

    def deliver(self, items: Sequence[Item]) -> Outcome: ...
