"""Reading and inspecting dead-letter topics (``amberflo-connector dlq inspect``).

Reading never joins the connector's consumer group and never commits for it
(``connector.kafka.open_reader``).  A dead letter read back is a ``DeadLetterView``
(``connector.dlq.view``); replaying is in ``connector.dlq.replay``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from rich.table import Table

from connector.dlq.view import STAGES, DeadLetterView
from connector.errors import ConfigError
from connector.kafka import open_reader, partitions_of, scan
from connector.settings import Settings
from connector.timefmt import ms_to_iso

ERROR_PREVIEW_CHARS = 160
"""Error text shown per row of the ``inspect`` table (``--json`` has all of it)."""


def default_topics(settings: Settings) -> list[str]:
    """The DLQ topic of each configured source topic (patterns have none to derive)."""
    out = settings.dlq_topics()
    if not out:
        raise ConfigError(
            "no dead-letter topic to read: give --topic, or set CONNECTOR_DLQ__TOPIC or "
            "CONNECTOR_KAFKA__TOPICS (patterns have no DLQ topic to derive)"
        )
    return out


def read_dead_letters(
    settings: Settings,
    topics: list[str],
    idle_s: float = 2.0,
    on_missing: Callable[[str], None] | None = None,
) -> Iterator[DeadLetterView]:
    """Every dead letter of ``topics`` from the beginning, without committing anything.

    Uses a throwaway group id and ``assign()``, so the connector's group is never joined.
    """
    consumer = open_reader(settings, f"amberflo-connector-dlq-inspect-{time.time_ns()}")
    try:
        for topic in topics:
            parts = partitions_of(consumer, topic)
            if parts is None:
                if on_missing is not None:
                    on_missing(topic)
                continue
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            for msg in scan(consumer, idle_s, lambda: False):
                yield DeadLetterView.from_message(msg)
            consumer.unassign()
    finally:
        consumer.close()


class FirstLetters:
    """Tells the first dead letter of a source record from later ones.

    Before 0.2 a record re-read after a crash was dead-lettered again, so a DLQ can hold
    several letters of one record (same source topic, partition and offset, and topic id when
    the letter names it).  ``dlq inspect`` and ``dlq replay`` treat them as one.  Keeps one
    integer per dead letter read (a few dozen bytes each).  A letter without source
    coordinates is always a first one.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, str | None], set[int]] = {}
        self.duplicates = 0

    def first(self, letter: DeadLetterView) -> bool:
        topic, partition, offset = (
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
        )
        if topic is None or partition is None or offset is None:
            return True
        seen = self._seen.setdefault((topic, partition, letter.incarnation), set())
        if offset in seen:
            self.duplicates += 1
            return False
        seen.add(offset)
        return True


@dataclass
class Summary:
    """Dead letters counted by stage and error class."""

    by_stage: Counter[str] = field(default_factory=Counter)
    by_class: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, letter: DeadLetterView) -> None:
        stage = letter.stage or "unknown"
        self.by_stage[stage] += 1
        self.by_class.setdefault(stage, Counter())[letter.error_class or "unknown"] += 1

    @property
    def total(self) -> int:
        return sum(self.by_stage.values())

    def line(self) -> str:
        """``3 dead letters — decode 1 (DecodeError 1); sink 2 (EventRejected 2)``."""
        noun = "dead letter" if self.total == 1 else "dead letters"
        if not self.total:
            return f"0 {noun}"
        order = [s for s in STAGES if s in self.by_stage] + sorted(
            s for s in self.by_stage if s not in STAGES
        )
        parts = []
        for stage in order:
            classes = ", ".join(f"{name} {n}" for name, n in sorted(self.by_class[stage].items()))
            parts.append(f"{stage} {self.by_stage[stage]} ({classes})")
        return f"{self.total} {noun} — " + "; ".join(parts)


def letters_table(letters: list[DeadLetterView], title: str | None = None) -> Table:
    """The ``dlq inspect`` table: source coordinates, stage, HTTP status, error, time, value."""
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("source", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("HTTP", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", min_width=30)
    table.add_column("failed at", no_wrap=True)
    table.add_column("value", overflow="ellipsis", no_wrap=True, max_width=40)
    for d in letters:
        where = (
            f"{d.source_topic}/{d.source_partition}@{d.source_offset}"
            if d.source_topic is not None
            else f"(dlq) {d.coordinates}"
        )
        error = f"{d.error_class}: {d.message}" if d.error_class else (d.message or "")
        if len(error) > ERROR_PREVIEW_CHARS:
            error = error[: ERROR_PREVIEW_CHARS - 1] + "…"
        table.add_row(
            where,
            d.stage or "?",
            str(d.http_status) if d.http_status is not None else "",
            error,
            ms_to_iso(d.failed_or_timestamp_ms, "seconds"),
            d.preview(),
        )
    return table
