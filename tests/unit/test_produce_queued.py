"""The one produce-until-queued loop, and the DLQ publisher giving up on it when stopping."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

from connector.dlq.publish import DeadLetterPublisher
from connector.kafka import produce_queued
from connector.records import DeadLetter, SourceRecord
from connector.settings import Settings

# No broker at all: nothing is ever delivered, so a one-message queue stays full.
FULL_QUEUE = {"bootstrap.servers": "127.0.0.1:1", "queue.buffering.max.messages": 1}


def test_produce_queued_waits_while_full_and_gives_up_on_stop() -> None:
    producer = Producer({**FULL_QUEUE, "log_level": 0})
    assert produce_queued(producer, "t", value=b"1")
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3  # full three times (serving callbacks in between), then stop

    started = time.monotonic()
    assert not produce_queued(producer, "t", value=b"2", stop=stop, wait_s=0.01)
    assert calls == 4 and time.monotonic() - started < 1


def test_a_stopping_dlq_publisher_does_not_block_on_a_full_queue() -> None:
    """A SIGTERM while the DLQ producer's queue is full (DLQ broker down) must not hang the
    worker's main thread: the letter is left unacknowledged (its record stays uncommitted)."""
    settings = Settings(
        kafka={"topics": ["t"], "producer": {**FULL_QUEUE, "log_level": 0}},
        amberflo={"api_key": "k"},
    )
    stopping = threading.Event()
    publisher = DeadLetterPublisher(settings, stopping)
    publisher._known.add("t.dlq")  # the topic exists (no broker to ask here)
    acked: list[int] = []
    letters = [
        DeadLetter(SourceRecord("t", 0, i, 1, None, b"x"), "decode", "DecodeError", "bad")
        for i in range(2)
    ]
    publisher.publish(letters[0], lambda: acked.append(0))  # fills the queue
    stopping.set()
    started = time.monotonic()
    publisher.publish(letters[1], lambda: acked.append(1))  # used to loop here forever
    assert time.monotonic() - started < 1
    assert acked == [] and publisher.pending == 2
