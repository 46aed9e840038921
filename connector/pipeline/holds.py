"""Partitions waiting for a record their decoder cannot read yet.

A ``RetryableError`` from a mapper (a schema registry that is down) is not the record's fault:
the record is never dead-lettered.  Its partition is rewound to it and paused (``Source.hold``:
what was fetched past it is dropped, to be fetched again), and fetched again after a backoff
with the sink's retry settings (``CONNECTOR_SINK__RETRY_*``) while the other partitions go on.
Nothing of the record is tracked, so nothing at or past it is committed meanwhile; once a
partition has failed for ``sink.retry_timeout_s`` (when set) the connector stops.

Only the worker's main thread uses a ``Holds``.
"""

from __future__ import annotations

import logging
import random
import time

from connector import metrics
from connector.errors import FatalError, RetryableError, ThrottledError
from connector.pipeline.source import Source
from connector.records import SourceRecord
from connector.settings import SinkSettings

log = logging.getLogger("connector.worker")


class Hold:
    """A partition rewound to a record its decoder could not read."""

    __slots__ = ("attempts", "since", "until")

    def __init__(self, now: float) -> None:
        self.since = now  # first failure since the partition last read a record
        self.attempts = 0
        self.until = 0.0  # while non-zero: paused, fetched again from this time on


class Holds(dict[tuple[str, int], Hold]):
    """The holds by (topic, partition).  A partition that reads a record again leaves it (the
    worker's hot path deletes its entry), so its next failure backs off from the start."""

    __slots__ = ("_cfg", "_source")

    def __init__(self, cfg: SinkSettings, source: Source) -> None:
        super().__init__()
        self._cfg = cfg
        self._source = source

    def hold(self, record: SourceRecord, exc: RetryableError) -> Hold:
        """Rewind ``record``'s partition to it and pause it for a backoff; stop the connector
        (``FatalError``) once it has failed for ``retry_timeout_s``."""
        cfg = self._cfg
        now = time.monotonic()
        key = (record.topic, record.partition)
        hold = self.get(key)
        if hold is None:
            hold = self[key] = Hold(now)
        hold.attempts += 1
        failing = now - hold.since
        if cfg.retry_timeout_s is not None and failing >= cfg.retry_timeout_s:
            raise FatalError(
                f"{record.topic}[{record.partition}] could not be decoded for {failing:.0f}s "
                f"(CONNECTOR_SINK__RETRY_TIMEOUT_S): {exc}"
            )
        delay = min(cfg.retry_max_s, cfg.retry_initial_s * 2 ** min(hold.attempts - 1, 30))
        delay *= 0.5 + random.random() / 2  # jitter: workers do not retry in step
        if isinstance(exc, ThrottledError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, cfg.retry_max_s))
        self._source.hold(record.topic, record.partition, record.offset)
        hold.until = now + delay
        metrics.DECODE_RETRIES.inc()
        self._count()
        log.warning(
            "%s; %s[%d] waits at offset %d, again in %.1fs (attempt %d, not dead-lettered)",
            exc,
            record.topic,
            record.partition,
            record.offset,
            delay,
            hold.attempts,
        )
        return hold

    def release_due(self) -> None:
        """Fetch again the partitions whose backoff is over."""
        now = time.monotonic()
        for (topic, partition), hold in self.items():
            if hold.until and hold.until <= now:
                hold.until = 0.0
                self._source.release(topic, partition)
        self._count()

    def forget(self, parts: list[tuple[str, int]]) -> None:
        """Revoked or lost partitions: their next owner starts without a hold."""
        for key in parts:
            self.pop(key, None)
        self._source.forget(parts)
        self._count()

    def _count(self) -> None:
        metrics.HELD.set(sum(1 for h in self.values() if h.until))
