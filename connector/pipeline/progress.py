"""How far behind a worker is, as an operator sees it: consumer lag per partition, the age of
the oldest unfinished record, and the retention guard.

Everything here runs on the worker's main thread and off the per-record path: ``on_stats``
from librdkafka's statistics callback (served inside ``consume()`` every
``statistics.interval.ms``), ``tick`` once per commit interval.

Retention guard: a record that is not done is not committed, so a restart reads it again,
unless the broker has deleted it first, and then its usage is lost without a trace.  The
guard compares the age of each partition's oldest unfinished record with its topic's
``retention.ms`` (asked from the broker with DescribeConfigs, again every ``REFRESH_S``) and
logs and exposes the share used: warn from ``CONNECTOR_RETENTION_GUARD__WARN_RATIO``, critical
from ``…__CRITICAL_RATIO``.  A topic whose retention is unlimited, not reported or not
readable (no DESCRIBE_CONFIGS permission) is not guarded, and a line says so once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from connector import metrics
from connector.kafka import client_config
from connector.pipeline.checkpoint import PartitionState
from connector.settings import Settings

log = logging.getLogger("connector.guard")

Key = tuple[str, int]

REFRESH_S = 600.0
"""Topic retention is read again this often (an operator may raise it during an incident)."""
REMIND_S = 300.0
"""While the guard is at warn or critical, the worst partition is logged again this often."""
LEVELS = ("ok", "warn", "critical")


def lag_from_stats(stats: Mapping[str, Any]) -> dict[Key, int]:
    """Consumer lag per partition from one librdkafka statistics object.

    librdkafka's own ``consumer_lag``: the high watermark (the last stable offset under
    ``isolation.level=read_committed``) minus the committed offset.  Partitions without a
    committed offset or a known watermark are left out; a watermark below the committed
    offset (a stale one) counts as 0.
    """
    out: dict[Key, int] = {}
    for topic, tstats in (stats.get("topics") or {}).items():
        for pid, pstats in (tstats.get("partitions") or {}).items():
            partition = int(pid)
            if partition < 0:
                continue
            lag = pstats.get("consumer_lag", -1)
            if lag >= 0:
                out[(topic, partition)] = lag
            elif pstats.get("committed_offset", -1) >= 0 and pstats.get("hi_offset", -1) >= 0:
                out[(topic, partition)] = 0  # a watermark behind the commit: nothing to do
    return out


def guard_level(age_ms: float, retention_ms: float, warn: float, critical: float) -> int:
    ratio = age_ms / retention_ms
    return 2 if ratio >= critical else 1 if ratio >= warn else 0


def human(ms: float) -> str:
    s = ms / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"


class TopicRetention:
    """Topics' ``retention.ms`` from the broker (DescribeConfigs), asked without blocking."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._retention: dict[str, float | None] = {}  # topic → retention.ms; None: unguarded
        self._asked: dict[str, float] = {}
        self._futures: dict[str, Future[Any]] = {}
        self._admin: AdminClient | None = None

    def poll(self, topics: set[str]) -> Mapping[str, float | None]:
        """What is known so far (None: not guarded); asks for new or stale topics."""
        self._collect()
        if not self._futures:
            # No request open: release the client (and its threads) until the next one, so
            # that none is left for the interpreter to tear down at exit.
            self._admin = None
        now = time.monotonic()
        for topic in topics:
            asked = self._asked.get(topic)
            if topic in self._futures or (asked is not None and now - asked < REFRESH_S):
                continue
            self._asked[topic] = now
            if self._admin is None:
                self._admin = AdminClient(client_config(self._settings))
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
            try:
                (future,) = self._admin.describe_configs([resource], request_timeout=30).values()
            except KafkaException as exc:
                log.warning("retention guard: cannot ask for %s's retention.ms: %s", topic, exc)
                continue
            self._futures[topic] = future
        return self._retention

    def _collect(self) -> None:
        for topic, future in list(self._futures.items()):
            if not future.done():
                continue
            del self._futures[topic]
            before = self._retention.get(topic, -1.0)
            reason = None
            try:
                entry = future.result().get("retention.ms")
                value = float(entry.value) if entry is not None and entry.value else None
            except (KafkaException, ValueError) as exc:
                value, reason = None, f"cannot read its retention.ms ({exc})"
            if value is not None and value <= 0:
                value, reason = None, "its retention is unlimited"
            elif value is None and reason is None:
                reason = "the broker reports no retention.ms for it"
            self._retention[topic] = value
            if value is None and before is not None:
                log.info("retention guard off for topic %s: %s", topic, reason)


class RetentionSource(Protocol):
    def poll(self, topics: set[str]) -> Mapping[str, float | None]: ...


class FixedRetention:
    """Retention known in advance (a worker driven without a broker, tests)."""

    def __init__(self, retention: Mapping[str, float | None]) -> None:
        self.retention = retention
        self.asked: set[str] = set()

    def poll(self, topics: set[str]) -> Mapping[str, float | None]:
        self.asked |= topics
        return self.retention


class Progress:
    """Lag, oldest-unfinished age and retention gauges of the partitions ``assigned()``."""

    def __init__(
        self,
        settings: Settings,
        assigned: Callable[[], Mapping[Key, PartitionState]],
        retention: RetentionSource | None = None,
    ) -> None:
        self._settings = settings
        self._assigned = assigned
        self._retention = retention or TopicRetention(settings)
        self._exported: set[Key] = set()
        self._levels: dict[Key, int] = {}
        self._reminded = 0.0

    # -- lag ------------------------------------------------------------------------------
    def on_stats(self, raw: str) -> None:
        """librdkafka's ``stats_cb``: set the lag gauge of every assigned partition."""
        try:
            lags = lag_from_stats(orjson.loads(raw))
        except (orjson.JSONDecodeError, AttributeError, ValueError):
            return
        assigned = self._assigned()
        for key, lag in lags.items():
            if key in assigned:
                metrics.LAG.labels(key[0], str(key[1])).set(lag)

    # -- age and retention ----------------------------------------------------------------
    def tick(self, now_ms: float | None = None) -> None:
        """Refresh the age and retention gauges; log guard level changes and reminders."""
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        assigned = self._assigned()
        for key in self._exported - assigned.keys():
            labels = (key[0], str(key[1]))
            for gauge in (metrics.LAG, metrics.OLDEST_AGE, metrics.RETENTION_USED):
                with contextlib.suppress(KeyError):  # never set for this partition
                    gauge.remove(*labels)
            self._levels.pop(key, None)
        self._exported = set(assigned)
        retention_of = self._retention.poll({topic for topic, _ in assigned})
        g = self._settings.retention_guard
        worst: tuple[int, float, Key, float] | None = None
        for key, state in assigned.items():
            ts = state.oldest_timestamp_ms()
            age_ms = max(0.0, now_ms - ts) if ts is not None and ts > 0 else 0.0
            labels = (key[0], str(key[1]))
            metrics.OLDEST_AGE.labels(*labels).set(age_ms / 1000)
            retention = retention_of.get(key[0])
            if retention is None:
                continue
            metrics.RETENTION_USED.labels(*labels).set(age_ms / retention)
            level = guard_level(age_ms, retention, g.warn_ratio, g.critical_ratio)
            if level != self._levels.get(key, 0):
                self._log(level, key, age_ms, retention)
                if level > self._levels.get(key, 0):
                    self._reminded = time.monotonic()
            self._levels[key] = level
            if worst is None or (level, age_ms / retention) > worst[:2]:
                worst = (level, age_ms / retention, key, retention)
        metrics.RETENTION_GUARD.set(worst[0] if worst else 0)
        if worst and worst[0] and time.monotonic() - self._reminded >= REMIND_S:
            self._reminded = time.monotonic()
            self._log(worst[0], worst[2], worst[1] * worst[3], worst[3])

    def _log(self, level: int, key: Key, age_ms: float, retention_ms: float) -> None:
        where = f"{key[0]}[{key[1]}]"
        share = f"{age_ms / retention_ms:.0%} of the topic's retention.ms ({human(retention_ms)})"
        if level == 0:
            log.info("retention guard: %s is back to ok (oldest unfinished: %s)", where, share)
            return
        log.log(
            logging.ERROR if level == 2 else logging.WARNING,
            "retention guard %s: the oldest unfinished record of %s is %s old, %s; the broker "
            "deletes records older than that before they are billed. Fix what holds delivery "
            "back (ingest_backing_off, dead_letter_failures) or raise the topic's retention.ms",
            LEVELS[level],
            where,
            human(age_ms),
            share,
        )
