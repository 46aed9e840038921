"""Offset commits: what the checkpoint says is done, committed synchronously by the consumer.

* ``commit`` hands every watermark that moved (``Checkpoint.to_commit``: per partition, the
  lowest offset not done, or one past the highest seen) to ``Source.commit`` and notes what
  the broker stored; the DLQ ledger's marks follow (``DeadLetters.committed``).  A refused
  commit stores nothing and is retried at the next one.
* The worker's loop commits once ``interval_s`` (``commit_interval_ms``) has passed since
  ``last``; the revoked partitions are committed on revoke, and all once more on shutdown
  (``pipeline.handover``).
* After each commit the gauges an operator watches are refreshed: records, events and bytes
  held, then ``Progress.tick`` (oldest unfinished age, retention guard).
* ``allowed`` False: nothing more is committed (a fatal error; the shutdown's last commit is
  done, and closing the consumer revokes).

Only the worker's main thread uses it.
"""

from __future__ import annotations

import time

from connector import metrics
from connector.pipeline.budget import Budget
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.letters import DeadLetters
from connector.pipeline.progress import Progress
from connector.pipeline.source import Source
from connector.settings import KafkaSettings


class Commits:
    def __init__(
        self,
        cfg: KafkaSettings,
        source: Source,
        checkpoint: Checkpoint,
        letters: DeadLetters,
        budget: Budget,
        progress: Progress,
    ) -> None:
        self.interval_s = cfg.commit_interval_ms / 1000
        self.last = time.monotonic()  # of the last commit attempted (monotonic)
        self.allowed = True
        self._source = source
        self._checkpoint = checkpoint
        self._letters = letters
        self._budget = budget
        self._progress = progress

    def commit(self, only: set[tuple[str, int]] | None = None) -> None:
        """Commit what is done (of the partitions ``only``, None: all), then refresh the
        gauges."""
        self.last = time.monotonic()
        if not self.allowed:
            return
        checkpoint = self._checkpoint
        done = self._source.commit(checkpoint.to_commit(only))
        for t, p, o in done:
            checkpoint.committed(t, p, o)
        self._letters.committed((checkpoint.partitions[(t, p)], o) for t, p, o in done)
        metrics.BUFFERED.set(checkpoint.pending_records)
        metrics.BUFFERED_EVENTS.set(self._budget.events)
        metrics.BUFFERED_BYTES.set(self._budget.bytes)
        self._progress.tick()
