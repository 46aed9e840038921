"""Failure handling that needs no broker or server: the 'still stuck' log cadence of the sink,
and the DLQ publisher's contract that a record is done only once its dead letter is acked
(exercised with the real librdkafka producer pointed at a port where nothing listens)."""

from __future__ import annotations

import logging
import time

import pytest
from tenacity import RetryCallState, Retrying

from connector import metrics
from connector.dlq.publish import DeadLetterPublisher
from connector.embedded import free_port
from connector.errors import FatalError, RetryableError
from connector.pipeline.checkpoint import Checkpoint
from connector.records import DeadLetter, SourceRecord
from connector.settings import Settings
from connector.sinks.api import Sink


def settings(**producer: object) -> Settings:
    return Settings(
        kafka={
            "topics": ["t"],
            "bootstrap_servers": f"127.0.0.1:{free_port()}",
            "producer": producer,
        },
        amberflo={"api_key": "secret-key"},
    )


def failed_attempt(elapsed: float) -> RetryCallState:
    rs = RetryCallState(Retrying(), None, (), {})
    rs.start_time = time.monotonic() - elapsed
    err = RetryableError("HTTP 500 from http://x/ingest")
    rs.set_exception((RetryableError, err, None))
    return rs


def test_stuck_ingest_logs_an_error_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink(settings())
    with caplog.at_level(logging.WARNING, "connector.sink"):
        sink.retry._before_sleep(failed_attempt(5))
        sink.retry._before_sleep(failed_attempt(61))
        sink.retry._before_sleep(failed_attempt(75))  # within the same minute: a warning only
    levels = [(r.levelname, r.getMessage().split(" (")[0][:40]) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == ["WARNING", "ERROR", "WARNING"]
    assert caplog.records[1].getMessage().startswith("ingest has been failing for 61s")
    assert "secret-key" not in caplog.text


def test_dead_letter_not_acknowledged_keeps_its_record_pending() -> None:
    # log_level 0: librdkafka would print a connection-refused line every few ms otherwise.
    pub = DeadLetterPublisher(settings(**{"message.timeout.ms": 300, "log_level": 0}))
    pub.RETRY_PAUSE_S = 0.05
    pub._known.add("t.dlq")  # the topic "exists": no admin call to the unreachable broker
    state = Checkpoint().assign("t", 0)
    for offset in range(3):
        state.track(offset, 1)
    state.done(0)
    acked: list[int] = []
    record = SourceRecord("t", 0, 1, 1000, b"k", b"not json", ())
    failures = metrics.DEAD_LETTER_FAILURES._value.get()

    pub.publish(
        DeadLetter(record, "decode", "DecodeError", "bad"),
        lambda _o: (acked.append(1), state.done(1)),
    )
    state.done(2)  # a later record finished: the watermark must still stop at the dead letter
    # librdkafka scans for timed-out messages about once a second; allow a loaded machine
    # plenty of time (the loop ends as soon as the second failure is seen).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and metrics.DEAD_LETTER_FAILURES._value.get() - failures < 2:
        pub.poll(0.05)
    assert acked == []
    assert metrics.DEAD_LETTER_FAILURES._value.get() - failures >= 2  # produced again, failed again
    assert pub.pending == 1  # never dropped
    assert state.committable() == 1
    assert pub.flush(0.2) is False


def test_a_dead_letter_that_can_never_be_written_stops_the_connector() -> None:
    pub = DeadLetterPublisher(settings(**{"message.max.bytes": 1000}))
    pub._known.add("t.dlq")
    record = SourceRecord("t", 0, 7, 1000, None, b"x" * 5000, ())
    with pytest.raises(FatalError, match=r"dead letter of t/0@7 .*CONNECTOR_KAFKA__PRODUCER"):
        pub.publish(DeadLetter(record, "sink", "EventRejected", "HTTP 413", 413), lambda _o: None)


def test_a_failed_dead_letter_of_a_revoked_partition_is_not_produced_again() -> None:
    """Once its partition is revoked (``wanted()`` false) the new owner dead-letters the record:
    the old owner drops its failed dead letter instead of retrying it."""
    pub = DeadLetterPublisher(settings(**{"message.timeout.ms": 300, "log_level": 0}))
    pub.RETRY_PAUSE_S = 0.05
    pub._known.add("t.dlq")
    state = Checkpoint().assign("t", 0)
    state.track(1, 1)
    record = SourceRecord("t", 0, 1, 1000, b"k", b"not json", ())
    failures = metrics.DEAD_LETTER_FAILURES._value.get()
    pub.publish(
        DeadLetter(record, "decode", "DecodeError", "bad"),
        lambda _offset: state.done(1),
        lambda: state.active,
    )
    state.active = False  # revoked before the broker answered
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and metrics.DEAD_LETTER_FAILURES._value.get() == failures:
        pub.poll(0.05)
    assert pub.flush(1.0) is True  # nothing left to produce
    assert metrics.DEAD_LETTER_FAILURES._value.get() - failures == 1
