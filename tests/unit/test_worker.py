"""``Worker`` on the rebalance paths, with the broker, the sink and the DLQ producer replaced by
in-memory stand-ins: the test drives rebalance callbacks, delivery outcomes and DLQ
acknowledgements itself, in the orders that are hard to force on a real broker."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from connector.errors import EventRejected
from connector.pipeline.budget import Budget
from connector.pipeline.worker import Worker
from connector.records import DeadLetter
from connector.settings import Settings
from connector.sinks.base import Batching, Item, Outcome

T0 = 1_767_225_600_000


class Msg:
    """What ``Consumer.consume`` returns, for one record."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._coords = (topic, partition, offset)
        self._value = value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._coords[0]

    def partition(self) -> int:
        return self._coords[1]

    def offset(self) -> int:
        return self._coords[2]

    def timestamp(self) -> tuple[int, int]:
        return (1, T0)

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


class FakeSource:
    def __init__(self) -> None:
        self.paused = False
        self.commits: list[list[tuple[str, int, int]]] = []
        self.pauses = 0
        self.resumes = 0
        self.held: dict[tuple[str, int], int] = {}  # rewound partition → its offset
        self.released: list[tuple[str, int]] = []

    def commit(self, offsets: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        if offsets:
            self.commits.append(list(offsets))
        return offsets

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False
        self.resumes += 1

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        return {(t, p): o for batch in self.commits for t, p, o in batch}

    def hold(self, topic: str, partition: int, offset: int) -> None:
        self.held[(topic, partition)] = offset

    def release(self, topic: str, partition: int) -> None:
        del self.held[(topic, partition)]
        self.released.append((topic, partition))

    def forget(self, parts: list[tuple[str, int]]) -> None:
        for key in parts:
            self.held.pop(key, None)


class FakeSink:
    target = "http://sink.invalid/ingest"
    backing_off = 0

    def __init__(self, settings: Settings) -> None:
        self.abort = threading.Event()
        self.batching = Batching(settings.sink.batch_size, settings.sink.linger_ms / 1000)


class FakeDlq:
    def __init__(self) -> None:
        self.letters: list[tuple[DeadLetter, Callable[[int], None], Callable[[], bool]]] = []
        self.answers: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def publish(
        self,
        letter: DeadLetter,
        on_ack: Callable[[int], None],
        wanted: Callable[[], bool],
        partition: int,
    ) -> None:
        assert partition == letter.record.partition % 2
        self.letters.append((letter, on_ack, wanted))

    def poll(self, _timeout: float = 0.0) -> None:
        """Runs the acknowledgements other threads queued in ``answers`` (as librdkafka runs
        delivery callbacks inside ``poll``)."""
        while not self.answers.empty():
            self.answers.get_nowait()()


class FakeLedger:
    """The DLQ as the ledger would read it: ``existing`` holds (partition, offset) of records
    that already have a letter, ``reported`` those of failure reports' letters; the DLQ topic
    has two partitions."""

    def __init__(self) -> None:
        self.existing: set[tuple[int, int]] = set()
        self.reports: set[tuple[int, int]] = set()
        self.acks: list[tuple[int, int]] = []
        self.forgotten: list[int] = []
        self.flying: dict[int, int] = {}  # partition → letters produced, not acknowledged
        self.released: list[tuple[int, list[tuple[int, int]]]] = []

    def lettered(self, state: Any, offset: int) -> int | None:
        key = (state.partition, offset)
        return 0 if key in self.existing or key in self.reports else None

    def reported(self, state: Any, offset: int) -> int | None:
        return 0 if (state.partition, offset) in self.reports else None

    def producing(self, state: Any, offset: int) -> tuple[str, int]:
        self.flying[state.partition] = self.flying.get(state.partition, 0) + 1
        return f"{state.topic}.dlq", state.partition % 2

    def acked(self, state: Any, offset: int, dlq_offset: int, reported: bool = False) -> None:
        self.flying[state.partition] -= 1
        self.acks.append((offset, dlq_offset))
        (self.reports if reported else self.existing).add((state.partition, offset))

    def in_flight(self, state: Any) -> int:
        return self.flying.get(state.partition, 0)

    def release(self, state: Any, open_ranges: list[tuple[int, int]], since: float) -> None:
        self.released.append((state.partition, open_ranges))

    def committed(self, commits: Any) -> None:
        list(commits)

    def forget(self, state: Any) -> None:
        self.flying.pop(state.partition, None)
        self.forgotten.append(state.partition)


def usage(i: int, **over: Any) -> bytes:
    record = {"customerId": "c", "meterApiName": "m", "meterValue": 1, "meterTimeInMillis": T0 + i}
    return orjson.dumps({**record, **over})


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def make(ledger: FakeLedger) -> Callable[..., tuple[Worker, FakeSource, FakeDlq]]:
    def _make(**sink: Any) -> tuple[Worker, FakeSource, FakeDlq]:
        settings = Settings(
            kafka={"topics": ["t"], "bootstrap_servers": "127.0.0.1:9"},
            amberflo={"api_key": "k"},
            sink=sink,
            transform={"unique_id_topic_ids": False},  # no broker to ask
            shutdown_timeout_s=0.2,
        )
        source, dlq = FakeSource(), FakeDlq()
        worker = Worker(
            settings,
            sink=FakeSink(settings),  # type: ignore[arg-type]
            dlq=dlq,  # type: ignore[arg-type]
            ledger=ledger,  # type: ignore[arg-type]
            source=source,  # type: ignore[arg-type]
        )
        return worker, source, dlq

    return _make


def batched(worker: Worker) -> list[Item]:
    """The items in the worker's open batches (not handed to the sink yet)."""
    return [item for batch in worker._batches._open.values() for item in batch]


def take_batch(worker: Worker) -> list[Item]:
    worker._batches.close_all()
    items = worker._deliveries.jobs.get_nowait()
    assert items is not None
    return items


def test_revoke_waits_for_a_batch_in_flight_and_commits_what_it_finished(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]],
) -> None:
    worker, source, _dlq = make()
    worker._on_assign([("t", 0)])
    worker._handle([Msg("t", 0, o, usage(o)) for o in range(3)])
    items = take_batch(worker)
    threading.Timer(0.05, lambda: worker._deliveries.done.put(Outcome(delivered=items))).start()
    worker._on_revoke([("t", 0)])
    assert source.committed_offsets() == {("t", 0): 3}
    assert worker.checkpoint.partitions == {}


def test_late_outcome_of_a_revoked_partition_is_neither_committed_nor_dead_lettered(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]],
) -> None:
    """The revoke gives up on the batch (shutdown_timeout_s); when its outcome arrives later,
    with one event refused, the old owner writes no dead letter and commits nothing for it:
    the partition's new owner reads those records again and decides."""
    worker, source, dlq = make()
    worker._on_assign([("t", 0), ("t", 1)])
    worker._handle([Msg("t", 0, o, usage(o)) for o in range(3)] + [Msg("t", 1, 0, usage(9))])
    items = take_batch(worker)
    worker._on_revoke([("t", 0)])
    assert source.committed_offsets().get(("t", 0), 0) == 0  # nothing of it was finished
    refused = EventRejected("HTTP 400: meterTimeInMillis", http_status=400)
    worker._deliveries.done.put(
        Outcome(delivered=items[:1] + items[3:], rejected=[(items[1], refused)])
    )
    worker._deliveries.drain()
    assert dlq.letters == []
    worker._commits.commit()
    assert source.committed_offsets() == {("t", 0): 0, ("t", 1): 1}  # only partition 1 moved


def test_a_record_with_events_delivered_and_rejected_is_dead_lettered_once_then_done(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]],
) -> None:
    worker, source, dlq = make(batch_size=2)
    worker._on_assign([("t", 0)])
    values = {"a": 1, "b": 2, "c": 3}
    worker._handle([Msg("t", 0, 0, usage(0, values=values)), Msg("t", 0, 1, usage(1))])
    first, second = worker._deliveries.jobs.get_nowait(), worker._deliveries.jobs.get_nowait()
    assert first is not None and second is not None  # [a, b] and [c, record 1]
    refused = EventRejected("HTTP 400", http_status=400)
    worker._deliveries.done.put(Outcome(delivered=first[:1], rejected=[(first[1], refused)]))
    worker._deliveries.done.put(Outcome(rejected=[(second[0], refused)], delivered=second[1:]))
    worker._deliveries.drain()
    assert len(dlq.letters) == 1  # two of its events refused: still one dead letter
    letter, on_ack, wanted = dlq.letters[0]
    assert letter.record.offset == 0 and letter.stage == "sink" and wanted()
    worker._commits.commit()
    assert source.committed_offsets() == {("t", 0): 0}  # record 0 waits for its dead letter
    on_ack(41)
    worker._commits.commit()
    assert source.committed_offsets() == {("t", 0): 2}


def test_pause_state_survives_a_reassignment(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]],
) -> None:
    """librdkafka starts newly assigned partitions unpaused; a worker still over its buffer
    limit pauses them again, and resumes once it is under half of it."""
    worker, source, _dlq = make(max_buffered_records=4)
    worker._on_assign([("t", 0)])
    worker._handle([Msg("t", 0, o, usage(o)) for o in range(4)])
    worker._pressure.check()
    assert source.paused and source.pauses == 1
    worker._pressure.check()
    assert source.pauses == 1  # already paused: nothing to do
    worker._on_assign([("t", 1)])  # cooperative: partition 1 added while paused
    worker._pressure.check()
    assert source.pauses == 2  # the new assignment paused too
    items = take_batch(worker)
    worker._deliveries.done.put(Outcome(delivered=items))
    worker._deliveries.drain()
    worker._pressure.check()
    assert not source.paused and source.resumes == 1


def test_records_of_a_partition_not_assigned_are_dropped_untracked(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]],
) -> None:
    """Nothing is tracked, delivered or committed for a partition another worker owns."""
    worker, _source, dlq = make()
    worker._on_assign([("t", 0)])
    worker._handle([Msg("t", 1, 5, usage(5)), Msg("t", 0, 0, usage(0)), Msg("t", 1, 6, b"{")])
    assert set(worker.checkpoint.partitions) == {("t", 0)}
    assert [it.record.partition for it in take_batch(worker)] == [0]
    assert dlq.letters == []
    worker._on_revoke([("t", 0)])
    worker._handle([Msg("t", 0, 1, usage(1))])
    assert worker._batches.items == 0 and worker.checkpoint.to_commit() == []


def test_a_record_that_already_has_a_dead_letter_is_done_without_a_second_one(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]], ledger: FakeLedger
) -> None:
    """Re-read after a crash: the ledger found the letter the previous run wrote, so the
    record is done at once (all of its rejected parts) and nothing is published."""
    worker, source, dlq = make(batch_size=3)
    ledger.existing = {(0, 1)}
    worker._on_assign([("t", 0)])
    worker._handle([Msg("t", 0, 0, b"not json"), Msg("t", 0, 1, b"{")])
    assert [letter.record.offset for letter, _ack, _wanted in dlq.letters] == [0]
    values = {"a": 1, "b": 2, "c": 3}
    worker._handle([Msg("t", 0, 2, usage(2, values=values))])
    batch = take_batch(worker)
    ledger.existing.add((0, 2))  # the previous run dead-lettered record 2 as well
    refused = EventRejected("HTTP 400", http_status=400)
    worker._deliveries.done.put(
        Outcome(delivered=batch[:1], rejected=[(it, refused) for it in batch[1:]])
    )
    worker._deliveries.drain()
    assert len(dlq.letters) == 1
    dlq.letters[0][1](7)  # record 0's letter acknowledged at DLQ offset 7
    assert ledger.acks == [(0, 7)]
    worker._commits.commit()
    assert source.committed_offsets() == {("t", 0): 3}
    worker._on_revoke([("t", 0)])
    assert ledger.forgotten == [0]


def answered(worker: Worker, outcome: Outcome, *batches: Any) -> None:
    """What a delivery thread does once the sink answered: release the batches, hand over."""
    for batch in batches:
        worker.budget.release(len(batch))
    worker._deliveries.done.put(outcome)
    worker._deliveries.drain()


def test_memory_is_bounded_by_events_not_only_records(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]],
) -> None:
    """Records with ten meters each: the worker maps a poll only while it holds fewer than
    max_buffered_events events; the rest of the poll waits unmapped (consumption paused) and
    is mapped, in order, once the sink has answered."""
    worker, source, _dlq = make(max_buffered_events=25, batch_size=10)
    worker._on_assign([("t", 0)])
    values = {f"m{k}": k for k in range(10)}
    poll = [Msg("t", 0, o, usage(o, values=values)) for o in range(6)]
    worker._handle(poll)  # type: ignore[arg-type]
    assert list(worker.checkpoint.partitions[("t", 0)].pending) == [0, 1, 2]  # 30 events ≥ 25
    assert [m.offset() for m in worker._pressure.stash] == [3, 4, 5]
    assert worker.budget.events == 30 and worker.budget.full
    worker._pressure.check()
    assert source.paused
    first, second = worker._deliveries.jobs.get_nowait(), worker._deliveries.jobs.get_nowait()
    answered(worker, Outcome(delivered=list(first) + list(second)), first, second)
    worker._pressure.check()
    assert source.paused  # records still wait in the stash
    worker._handle(worker._pressure.stash)  # type: ignore[arg-type]  (what _step does next)
    assert list(worker.checkpoint.partitions[("t", 0)].pending) == [2, 3, 4]
    assert [m.offset() for m in worker._pressure.stash] == [5]


def test_memory_is_bounded_by_bytes_and_a_revoke_drops_what_waits(
    make: Callable[..., tuple[Worker, FakeSource, FakeDlq]],
) -> None:
    worker, _source, _dlq = make(max_buffered_mb=1)
    worker._on_assign([("t", 0), ("t", 1)])
    big = usage(0, dimensions={"blob": "x" * 400_000})  # ~0.4 MB each
    poll = [Msg("t", p, o, big) for o in range(4) for p in (0, 1)]
    worker._handle(poll)  # type: ignore[arg-type]
    assert worker.budget.bytes >= 1024 * 1024 and worker.checkpoint.pending_records == 3
    assert len(worker._pressure.stash) == 5
    worker._on_revoke([("t", 1)])  # what waits of partition 1 is its next owner's to read
    assert [(m.partition(), m.offset()) for m in worker._pressure.stash] == [(0, 2), (0, 3)]


def test_the_budget_releases_bytes_with_the_events_and_ends_at_zero() -> None:
    budget = Budget(Settings(kafka={"topics": ["t"]}, amberflo={"api_key": "k"}).sink)
    budget.add(10, 10_000)
    budget.add(30, 2_000)
    budget.release(20)  # half the events: half the bytes
    assert (budget.events, budget.bytes) == (20, 6_000)
    budget.release(15)
    budget.release(5)
    assert (budget.events, budget.bytes) == (0, 0)
    assert not budget.full and budget.half_empty
