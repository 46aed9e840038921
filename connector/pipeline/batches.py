"""The batches the worker is filling, as the sink's ``Batching`` asks for them.

``window`` None (the API sink): one open batch for every partition.  ``window`` N (the S3
sink): one open batch per partition, holding only records whose offsets fall in one aligned
run ``[k·N, (k+1)·N)``, so that what a batch holds, and the object key derived from it, are a
function of the offsets: after a crash the same records form the same batch again (unless a
linger or a revoke closed the earlier one early).

A batch is *closed* (handed to ``submit``, the delivery queue) when it holds
``Batching.events`` items, when its run's last offset or a record of the next run arrives,
after ``linger_s``, and by ``close_all`` (revoke, shutdown).  Only the worker's main thread
uses this.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from connector.pipeline.checkpoint import PartitionState
from connector.sinks.base import Batching, Item

NO_END = sys.maxsize


class Batch(list[Item]):
    """Items of one future ``deliver`` call.  ``end``: the first offset that may not join
    (``NO_END`` without windows; 0 until the first record of a window set it);
    ``started``: when its first item arrived (monotonic)."""

    __slots__ = ("end", "started")

    def __init__(self, end: int) -> None:
        super().__init__()
        self.end = end
        self.started = 0.0


class Batches:
    def __init__(self, batching: Batching, submit: Callable[[Batch], None]) -> None:
        self.batching = batching
        self.window = batching.window
        self._submit = submit
        self._open: dict[PartitionState | None, Batch] = {}

    def for_state(self, state: PartitionState) -> Batch:
        """The batch that items of ``state``'s records go to (check ``end`` first)."""
        key = state if self.window else None
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = Batch(0 if self.window else NO_END)
        return batch

    def start_window(self, state: PartitionState, offset: int) -> Batch:
        """Close ``state``'s batch and open one for the run holding ``offset``."""
        old = self._open.pop(state, None)
        if old:
            self._submit(old)
        assert self.window is not None
        batch = self._open[state] = Batch((offset // self.window + 1) * self.window)
        return batch

    def close(self, batch: Batch, state: PartitionState) -> Batch:
        """Close a full ``batch``; returns the next one for ``state`` (same run)."""
        key = state if self.window else None
        self._open[key] = nxt = Batch(batch.end)
        self._submit(batch)
        return nxt

    def close_due(self, now: float) -> None:
        """Close every batch that is full, has lingered ``linger_s``, or (windowed) holds the
        last offset of its run: no later record can join it.  Called once per poll, so the
        per-record path stays free of this check."""
        limit, linger = self.batching.events, self.batching.linger_s
        for key, batch in list(self._open.items()):
            if batch and (
                len(batch) >= limit
                or now - batch.started >= linger
                or batch[-1].record.offset >= batch.end - 1
            ):
                del self._open[key]
                self._submit(batch)

    def close_all(self, only: set[tuple[str, int]] | None = None) -> None:
        """Close every batch with items (of the given partitions only, when windowed)."""
        for key, batch in list(self._open.items()):
            if key is not None and only is not None and (key.topic, key.partition) not in only:
                continue
            del self._open[key]
            if batch:
                self._submit(batch)

    def drop(self, state: PartitionState) -> Batch | None:
        """Forget ``state``'s open batch (its partition was lost: the new owner re-reads)."""
        return self._open.pop(state, None)

    def wait_s(self, cap: float) -> float:
        """How long the next poll may block before a batch must be closed (≤ ``cap``)."""
        linger = self.batching.linger_s
        now = time.monotonic()
        for batch in self._open.values():
            if batch:
                cap = min(cap, max(0.0, batch.started + linger - now))
        return cap

    @property
    def items(self) -> int:
        return sum(len(b) for b in self._open.values())
