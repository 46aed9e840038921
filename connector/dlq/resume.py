"""How an interrupted ``dlq replay`` resumes without republishing a record twice.

A replay commits its progress (the DLQ offsets it has handled) only after a whole window of
republished records was acknowledged.  Before a window is produced, the lowest offset each of
its target partitions can receive is committed as a *mark* in a second consumer group,
``<replay group>.pending.<dlq topic>``; the marks are cleared once every dead letter they
protect is committed past.  A run that finds marks (the previous run stopped between
producing and committing) reads those target partitions from the marks on and collects the
``amberflo.replay.source`` of every record there: those dead letters are already republished.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import cast

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from connector.dlq.view import REPLAY_SOURCE_HEADER
from connector.errors import FatalError
from connector.kafka import client_config, open_reader, scan
from connector.settings import Settings

Marks = dict[tuple[str, int], int]
"""Target (topic, partition) → the lowest offset a window may have produced at."""


class PendingMarks:
    """The marks groups of one replay run (``group``: its progress group)."""

    def __init__(self, settings: Settings, group: str, idle_s: float) -> None:
        self._settings = settings
        self._group = group
        self._idle_s = idle_s
        self._conf = client_config(settings)
        self._admin = AdminClient(dict(self._conf))
        self._committers: dict[str, Consumer] = {}

    def close(self) -> None:
        """Close the committers of the marks groups."""
        for c in self._committers.values():
            c.close()

    def record(self, group: str, marks: Marks) -> None:
        """Commit ``marks`` in the marks group ``group`` (before the window is produced)."""
        c = self._committers.get(group)
        if c is None:
            c = self._committers[group] = Consumer(
                {**self._conf, "group.id": group, "enable.auto.commit": False}
            )
        try:
            c.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in marks.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise FatalError(f"cannot record the replay window in {group!r}: {exc}") from exc

    def read(self, group: str) -> Marks:
        """The marks an interrupted run left: target partition → lowest offset it produced at."""
        futures = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        try:
            result = futures[group].result(10)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return {}
            raise FatalError(f"cannot read the replay marks of {group!r}: {exc}") from exc
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or []
            if tp.offset >= 0
        }

    def clear(self, group: str) -> None:
        """Delete the marks group (every dead letter it protects is committed past)."""
        for future in self._admin.delete_consumer_groups([group], request_timeout=10).values():
            try:
                future.result(10)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                raise FatalError(f"cannot clear the replay marks {group!r}: {exc}") from exc

    def republished(
        self, topic: str, pending: Marks, start: dict[int, int]
    ) -> set[tuple[int, int]]:
        """(partition, offset) of ``topic``'s dead letters already on their targets."""
        found: set[tuple[int, int]] = set()
        reader = open_reader(self._settings, f"{self._group}.scan-{time.time_ns()}")
        try:
            for source in self._sources(reader, pending):
                head, _, off = source.rpartition("/")
                name, _, part = head.rpartition("/")
                if name == topic and part.isdigit() and off.isdigit():
                    p, o = int(part), int(off)
                    if o >= start.get(p, 0):
                        found.add((p, o))
        finally:
            reader.close()
        return found

    def _sources(self, reader: Consumer, marks: Marks) -> Iterator[str]:
        """``amberflo.replay.source`` values on each marked partition from its offset on.

        Reads every partition up to its end offset as of now and then ``idle_s`` longer (some
        brokers report an end offset below the last record); or until a poll stays empty for
        ``idle_s``.
        """
        ends: dict[tuple[str, int], int] = {}  # partition → its end offset when read
        for (t, p), low in marks.items():
            _low, high = reader.get_watermark_offsets(
                TopicPartition(t, p), timeout=10, cached=False
            )
            if high > low:
                ends[(t, p)] = high
        reader.assign([TopicPartition(t, p, low) for (t, p), low in marks.items()])
        reached: list[float] = []

        def done() -> bool:
            if not reached and not ends:
                reached.append(time.monotonic())
            return bool(reached) and time.monotonic() - reached[0] >= self._idle_s

        for msg in scan(reader, self._idle_s, done):
            key = (str(msg.topic()), int(msg.partition() or 0))
            if key in ends and (msg.offset() or 0) + 1 >= ends[key]:
                del ends[key]
            raw = cast("list[tuple[str, bytes | None]] | None", msg.headers())
            for k, v in raw or ():
                if k == REPLAY_SOURCE_HEADER and v:
                    yield v.decode("utf-8", "replace")
        reader.unassign()
