"""Smoke test of the `kafka_broker` fixture: the embedded broker does what the pipeline needs."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from tests.integration.harness import FAST_GROUP, produce


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **FAST_GROUP,
        }
    )


def test_produce_consume_commit_and_resume(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(2)
    produce(kafka_broker, topic, [{"n": i} for i in range(100)], partition=0, headers=[("h", b"v")])
    first = _consumer(kafka_broker, f"smoke-{topic}")
    first.subscribe([topic])
    got = []
    while len(got) < 40:
        got += [m for m in first.consume(40 - len(got), 5) if m.error() is None]
    assert [m.offset() for m in got] == list(range(40))
    assert got[0].headers() == [("h", b"v")]
    first.commit(offsets=[TopicPartition(topic, 0, 40)], asynchronous=False)
    first.close()

    second = _consumer(kafka_broker, f"smoke-{topic}")  # same group: resumes at the commit
    second.subscribe([topic])
    rest = []
    while len(rest) < 60:
        rest += [m for m in second.consume(100, 5) if m.error() is None]
    second.close()
    assert [m.offset() for m in rest] == list(range(40, 100))
