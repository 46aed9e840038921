"""What the connector subscribes to: the configured topics, with every ``^regex`` resolved here.

A pattern must never match a dead-letter topic.  Reading one would count its dead letters as
usage under the DLQ's own coordinates (a later ``dlq replay`` then counts them a second time)
and dead-letter the ones that fail again into ``<dlq>.dlq``, and so on.  librdkafka's pattern
subscriptions cannot exclude names (POSIX/RE2 expressions have no negative lookahead), and
filtering assigned partitions would leave DLQ partitions assigned to a member that never reads
them.  So patterns are resolved here, against the cluster's topic list, into a literal
subscription without dead-letter topics:

* excluded: the configured ``CONNECTOR_DLQ__TOPIC``, every name the connector's dead-letter
  naming produces (``*.dlq``, hence ``*.dlq.dlq`` too) and internal topics (``__*``);
* a pattern is a Python regular expression matched with ``re.search`` (as librdkafka does,
  the ``^`` anchors it);
* the topic list is read again every ``CONNECTOR_KAFKA__PATTERN_REFRESH_S``; when the
  resolved set changes (a topic created or deleted), the consumer subscribes to the new list
  and the group rebalances, which is what librdkafka does on its own metadata refresh.  Members
  that have not refreshed yet keep their previous topics until they do; the group assigns the
  union, so a new topic's partitions go to the members that already subscribe to it.

A literal topic that looks like a dead-letter topic is subscribed as configured, with a warning.
"""

from __future__ import annotations

import logging
import re

from connector.settings import Settings

log = logging.getLogger("connector.source")

DLQ_SUFFIX = ".dlq"


class Subscription:
    def __init__(self, settings: Settings) -> None:
        self._dlq_topic = settings.dlq.topic
        topics = settings.kafka.topics
        self.literal = [t for t in topics if not t.startswith("^")]
        # (validated by the settings)
        self.patterns = [re.compile(t) for t in topics if t.startswith("^")]
        self.current: list[str] | None = None  # what the consumer subscribes to now

    def is_dead_letter_topic(self, topic: str) -> bool:
        return topic.endswith(DLQ_SUFFIX) or topic == self._dlq_topic

    def warn_about_literals(self) -> None:
        for topic in self.literal:
            if self.is_dead_letter_topic(topic):
                log.warning(
                    "CONNECTOR_KAFKA__TOPICS names %s, a dead-letter topic: its dead letters "
                    "are read as usage (a later dlq replay counts them again) and those that "
                    "fail again are dead-lettered into %s",
                    topic,
                    self._dlq_topic or topic + DLQ_SUFFIX,
                )

    def resolve(self, existing: list[str]) -> list[str]:
        """The literal topics, then the existing topics a pattern matches (sorted, no DLQs)."""
        out = list(self.literal)
        for topic in sorted(existing):
            if topic in out or topic.startswith("__") or self.is_dead_letter_topic(topic):
                continue
            if any(p.search(topic) for p in self.patterns):
                out.append(topic)
        return out

    def changed(self, existing: list[str]) -> list[str] | None:
        """The new topic list when it differs from ``current``, else None."""
        topics = self.resolve(existing)
        if topics == self.current:
            return None
        if self.current is not None:
            added = sorted(set(topics) - set(self.current))
            removed = sorted(set(self.current) - set(topics))
            log.info(
                "topic patterns now match %s (added: %s; removed: %s)",
                ", ".join(topics) or "nothing",
                ", ".join(added) or "none",
                ", ".join(removed) or "none",
            )
        elif self.patterns and len(topics) == len(self.literal):
            log.warning(
                "no topic matches %s yet; looking again every few seconds",
                ", ".join(p.pattern for p in self.patterns),
            )
        return topics
