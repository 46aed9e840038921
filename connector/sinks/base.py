"""What every sink shares: the unit of work and the answer a delivery gives.

Contract of a sink's ``deliver(items) -> Outcome``: it blocks until every item is either
*delivered* (the destination accepted it durably) or *rejected* (the destination refused that
very event: it becomes a dead letter), and never returns with an item in neither list.
Transient failures are retried inside; a failure no retry can fix raises ``FatalError``, and
a shutdown that interrupts the retries raises ``Abandoned`` (nothing of the batch is done).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.errors import Abandoned, RecordError
from connector.pipeline.checkpoint import PartitionState
from connector.records import MeterEvent, SourceRecord

__all__ = ["Abandoned", "Item", "Outcome"]


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
