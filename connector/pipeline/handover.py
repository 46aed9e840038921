"""Partitions changing hands: assigned to this worker, revoked, lost, or all of them at shutdown.

librdkafka calls ``assign``, ``revoke`` and ``lose`` inside ``poll``: on the worker's main
thread, between two steps of its loop, never while a poll is being mapped.

1. Assigned: each partition gets a fresh ``PartitionState`` (``Checkpoint.assign``), so no
   completion of an earlier assignment can touch it.  Assigned while consumption is paused, it
   is paused too at the next check (``pipeline.backpressure``).
2. Revoked: the partitions' open batches are closed (handed to the sink) and their in-flight
   work (batches, customer updates, dead letters, a failure report's letters) gets
   ``shutdown_timeout_s`` to finish, never past the stop deadline (``pipeline.stop``).  Then
   what is done is committed and the rest abandoned: the next owner reads it again, and
   deterministic uniqueIds make the overlap a no-op at Amberflo.  After a fatal error nothing
   is waited for nor committed.
3. Lost (the group went on without this worker): nothing of them is committed.
4. A revoked or lost partition is then forgotten: what waits of it in the stash, its hold, its
   open batch (its events released from the budget), its dead-letter bookkeeping, its state (a
   completion arriving later finds it inactive: neither committed nor dead-lettered).
5. Shutdown, once the loop has ended: every open batch is closed, all in-flight work gets until
   the stop deadline, retries still waiting are abandoned, what is done is committed (the last
   commit: closing the consumer revokes, and commits nothing more), the consumer is closed, the
   DLQ producer flushed within what is left of the deadline (1 s at most), the sink threads
   told to end.

Only the worker's main thread uses it.
"""

from __future__ import annotations

import logging
import time

from connector import metrics
from connector.dlq.publish import DeadLetterPublisher
from connector.pipeline.backpressure import Backpressure
from connector.pipeline.batches import Batches
from connector.pipeline.budget import Budget
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.commits import Commits
from connector.pipeline.delivery import Deliveries
from connector.pipeline.holds import Holds
from connector.pipeline.letters import DeadLetters
from connector.pipeline.source import Source
from connector.pipeline.stop import Stop

log = logging.getLogger("connector.worker")


class Handover:
    def __init__(
        self,
        timeout_s: float,
        *,
        stop: Stop,
        checkpoint: Checkpoint,
        batches: Batches,
        budget: Budget,
        pressure: Backpressure,
        holds: Holds,
        deliveries: Deliveries,
        letters: DeadLetters,
        commits: Commits,
        source: Source,
        dlq: DeadLetterPublisher,
    ) -> None:
        self._timeout_s = timeout_s  # shutdown_timeout_s
        self._stop = stop
        self._checkpoint = checkpoint
        self._batches = batches
        self._budget = budget
        self._pressure = pressure
        self._holds = holds
        self._deliveries = deliveries
        self._letters = letters
        self._commits = commits
        self._source = source
        self._dlq = dlq

    def assign(self, parts: list[tuple[str, int]]) -> None:
        log.info("assigned %s", fmt(parts))
        for topic, partition in parts:
            self._checkpoint.assign(topic, partition)
        self._pressure.assigned()

    def revoke(self, parts: list[tuple[str, int]]) -> None:
        log.info("revoked %s", fmt(parts))
        keys = set(parts)
        if self._commits.allowed:
            self._batches.close_all(keys)
            if not self.wait_for(keys, self._timeout_s):
                log.warning("revoke: abandoning unfinished work of %s (not committed)", fmt(parts))
            self._commits.commit(keys)
        self._forget(parts)

    def lose(self, parts: list[tuple[str, int]]) -> None:
        log.warning("lost %s: nothing of them is committed", fmt(parts))
        self._forget(parts)

    def _forget(self, parts: list[tuple[str, int]]) -> None:
        self._pressure.forget(parts)
        self._holds.forget(parts)
        for key in parts:
            state = self._checkpoint.partitions.get(key)
            if state is not None:
                dropped = self._batches.drop(state)
                if dropped is not None:
                    self._budget.release(len(dropped))
                self._letters.forget(state)
                self._checkpoint.revoke(*key)

    def shutdown(self) -> None:
        timeout = self._timeout_s
        self._batches.close_all()
        finished = self.wait_for(None, timeout)
        if not finished:
            log.warning("shutdown: in-flight work did not finish within %.0fs", timeout)
        self._deliveries.abort()
        self._commits.commit()
        self._commits.allowed = False  # close() revokes; everything committable is committed
        self._source.close()
        self._dlq.flush(max(0.0, min(1.0, self._stop.deadline - time.monotonic())))
        self._letters.close()
        self._deliveries.end()
        log.info("stopped")

    def wait_for(self, keys: set[tuple[str, int]] | None, timeout: float) -> bool:
        """Drain completions until the given partitions (None: all) have nothing pending (no
        unfinished record, no unacknowledged dead letter: a failure report's too), for
        ``timeout`` at most and never past the stop deadline (a signal during a revoke wait
        does not get a second ``shutdown_timeout_s``)."""
        deadline = min(time.monotonic() + timeout, self._stop.deadline)
        while True:
            states = [
                s for k, s in self._checkpoint.partitions.items() if keys is None or k in keys
            ]
            if not any(s.pending or self._letters.in_flight(s) for s in states):
                return True
            if time.monotonic() >= deadline:
                return False
            metrics.HEALTH.heartbeat()
            self._deliveries.drain(0.05)
            self._dlq.poll(0)


def fmt(parts: list[tuple[str, int]]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in parts) or "nothing"
