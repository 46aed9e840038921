"""Topic patterns are resolved by the connector, never onto dead-letter topics."""

from __future__ import annotations

import logging

import pytest

from connector.pipeline.subscription import Subscription
from connector.settings import Settings


def subscription(*topics: str, dlq: str | None = None) -> Subscription:
    return Subscription(
        Settings(kafka={"topics": list(topics)}, amberflo={"api_key": "k"}, dlq={"topic": dlq})
    )


CLUSTER = [
    "usage-a",
    "usage-a.dlq",
    "usage-a.dlq.dlq",
    "usage-errors",
    "usage-b",
    "billing",
    "__consumer_offsets",
    "other.dlq",
]


def test_a_pattern_never_matches_dead_letter_or_internal_topics() -> None:
    s = subscription("^usage-.*", "billing", dlq="usage-errors")
    assert s.resolve(CLUSTER) == ["billing", "usage-a", "usage-b"]
    assert subscription("^.*").resolve(CLUSTER) == ["billing", "usage-a", "usage-b", "usage-errors"]


def test_the_subscription_changes_only_when_the_resolved_set_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = subscription("^usage-.*")
    first = s.changed(["usage-a"])
    assert first == ["usage-a"]
    s.current = first
    assert s.changed(["usage-a", "usage-a.dlq"]) is None  # a new DLQ topic changes nothing
    with caplog.at_level(logging.INFO, "connector.source"):
        assert s.changed(["usage-a", "usage-a.dlq", "usage-c"]) == ["usage-a", "usage-c"]
    assert "added: usage-c" in caplog.text


def test_a_literal_dead_letter_topic_is_kept_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = subscription("usage-a", "usage-a.dlq")
    with caplog.at_level(logging.WARNING, "connector.source"):
        s.warn_about_literals()
    assert s.resolve(CLUSTER) == ["usage-a", "usage-a.dlq"]
    assert "names usage-a.dlq, a dead-letter topic" in caplog.text
    assert "into usage-a.dlq.dlq" in caplog.text
