"""``Source.commit``: what the broker answered per partition decides what counts as committed
(the consumer is a stand-in: a real broker that refuses one partition of a commit is not
something Tansu can be made to do)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector import metrics
from connector.pipeline.source import Source
from connector.settings import Settings


@dataclass
class Answer:
    topic: str
    partition: int
    offset: int
    error: KafkaError | None = None


class Refusing:
    """A consumer whose commit stores partition 0 and refuses partition 1."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def commit(self, offsets: list[Any], asynchronous: bool) -> list[Answer]:
        assert asynchronous is False
        if self.fail:
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        return [
            Answer(tp.topic, tp.partition, tp.offset, None if tp.partition == 0 else self.err())
            for tp in offsets
        ]

    @staticmethod
    def err() -> KafkaError:
        return KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE)

    def close(self) -> None:
        return None


@pytest.fixture
def source() -> Source:
    settings = Settings(
        kafka={"topics": ["t"], "bootstrap_servers": "127.0.0.1:9", "consumer": {"log_level": 0}},
        amberflo={"api_key": "k"},
    )
    s = Source(settings, print, print, print)
    s.consumer.close()
    s.consumer = Refusing()
    return s


def errors(name: str) -> float:
    return metrics.COMMIT_PARTITION_ERRORS.labels(error=name)._value.get()


def test_a_partition_refused_within_a_commit_is_not_counted_as_committed(
    source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    before = errors("OFFSET_METADATA_TOO_LARGE")
    assert source.commit([("t", 0, 10), ("t", 1, 20)]) == [("t", 0, 10)]
    assert errors("OFFSET_METADATA_TOO_LARGE") - before == 1
    assert "offset commit of t[1] refused" in caplog.text


def test_a_refused_commit_stores_nothing(source: Source) -> None:
    source.consumer.fail = True  # type: ignore[attr-defined]
    assert source.commit([("t", 0, 10)]) == []
    assert source.commit([]) == []
