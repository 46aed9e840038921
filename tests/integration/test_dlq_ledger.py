"""``DeadLetterLedger`` against the real broker: the letters of an S3 failure report concern
records committed long ago, yet a ledger started afresh (a restarted or new owner) finds them
while the report is open, because the mark stays below them until it is released."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from connector.dlq.ledger import REPORTED_CLASS, DeadLetterLedger
from connector.dlq.publish import DeadLetterPublisher
from connector.pipeline.checkpoint import PartitionState
from connector.records import DeadLetter, SourceRecord
from connector.settings import Settings
from tests.integration.harness import committed


def test_a_reports_letters_hold_the_mark_until_released(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka={"bootstrap_servers": kafka_broker, "topics": [topic], "group_id": group},
        amberflo={"api_key": "k"},
    )
    publisher = DeadLetterPublisher(settings)

    def write(ledger: DeadLetterLedger, state: PartitionState, offset: int, cls: str) -> int:
        """Dead-letter record ``offset`` as the worker does; returns the DLQ offset."""
        _topic, partition = ledger.producing(state, offset)
        record = SourceRecord(topic, 0, offset, 1, None, b"{}")
        acked: list[int] = []
        publisher.publish(DeadLetter(record, "sink", cls, "x"), acked.append, partition=partition)
        assert publisher.flush(10) and len(acked) == 1
        ledger.acked(state, offset, acked[0], reported=cls == REPORTED_CLASS)
        return acked[0]

    def fresh() -> tuple[DeadLetterLedger, PartitionState]:
        return DeadLetterLedger(settings, lambda t: t), PartitionState(topic, 0)

    def mark() -> int:
        return committed(kafka_broker, f"{group}.dlq-marks", topic, 1)[0]

    first, state = fresh()
    assert first.lettered(state, 900) is None  # reads the (empty) DLQ
    write(first, state, 900, "DecodeError")  # a record being read now
    first.committed([(state, 901)])
    # A report about records 10-19, committed long ago: two letters, then a crash (no tag).
    at = write(first, state, 10, REPORTED_CLASS)
    write(first, state, 11, REPORTED_CLASS)
    write(first, state, 950, "DecodeError")
    first.committed([(state, 951)])  # the committed offset is far past 10 and 11
    assert mark() <= at
    first.close()

    before = time.monotonic()  # a round of the watcher begins before the DLQ is read
    second, state = fresh()  # the restarted owner: reads from the mark
    assert second.lettered(state, 10) == at
    second.committed([(state, 960)])  # commits before the watcher comes: still known
    assert second.reported(state, 11) == at + 1 and mark() <= at
    second.release(state, [], before)  # that round may not have seen the report: kept
    assert second.lettered(state, 10) == at
    second.release(state, [(10, 19)], time.monotonic())  # still open after a round: kept
    second.committed([(state, 961)])
    assert second.lettered(state, 10) == at and mark() <= at
    second.release(state, [], time.monotonic())  # tagged handled: closed
    assert second.lettered(state, 10) is None
    second.committed([(state, 962)])
    assert mark() > at + 1  # the next owner need not read them
    second.close()

    third, state = fresh()
    assert third.lettered(state, 10) is None
    third.close()
