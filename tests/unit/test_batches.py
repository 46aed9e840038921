"""How the worker batches for a sink (pipeline.batches), driven through Worker._handle."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from connector.pipeline.batches import NO_END, Batches
from connector.pipeline.checkpoint import Checkpoint
from connector.records import MeterEvent, SourceRecord
from connector.sinks.base import Batching, Item


class Msg:
    """The parts of a confluent-kafka Message that _handle reads."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_767_225_600_000)

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return self._v

    def headers(self) -> None:
        return None


def value(i: int) -> bytes:
    return orjson.dumps(
        {"customerId": "c", "meterApiName": "m", "meterValue": i, "meterTimeInMillis": 1}
    )


def run(batching: Batching, polls: list[list[Msg]], monkeypatch: Any) -> list[list[Item]]:
    """Feed polls through a real Worker's _handle with the given batching; the batches
    submitted, then every batch still open (closed at the end, as on shutdown)."""
    from connector.pipeline import worker as worker_mod
    from connector.settings import Settings

    settings = Settings(
        kafka={"topics": ["t"]},
        amberflo={"api_key": "k"},
        metrics_port=0,
        transform={"unique_id_topic_ids": False},  # no broker to ask
    )
    monkeypatch.setattr(worker_mod, "Source", lambda *a, **k: None)
    monkeypatch.setattr(worker_mod, "DeadLetterPublisher", lambda *a, **k: None)
    w = worker_mod.Worker(settings)
    out: list[list[Item]] = []
    w._batches = Batches(batching, out.append)
    w.checkpoint = Checkpoint()
    for p in range(3):
        w.checkpoint.assign("t", p)
    for poll in polls:
        w._handle(poll)  # type: ignore[arg-type]
        w._batches.close_due(0.0)
    w._batches.close_all()
    return out


def spans(batches: list[list[Item]]) -> list[tuple[int, int, int]]:
    return [(b[0].record.partition, b[0].record.offset, b[-1].record.offset) for b in batches]


def test_mixed_batching_takes_every_partition_in_one_batch(monkeypatch: Any) -> None:
    polls = [[Msg("t", p, o, value(o)) for p in (0, 1) for o in range(3)]]
    out = run(Batching(events=4, linger_s=60), polls, monkeypatch)
    assert [len(b) for b in out] == [4, 2]
    assert {it.record.partition for it in out[0]} == {0, 1}


def test_windowed_batches_hold_one_aligned_run_of_one_partition(monkeypatch: Any) -> None:
    # partitions interleaved across polls, a run of 10 offsets per batch; partition 1
    # starts mid-run (a committed offset of 13) and skips offsets (compaction, or records
    # of a transaction marker)
    polls = [
        [Msg("t", 0, o, value(o)) for o in range(0, 7)]
        + [Msg("t", 1, o, value(o)) for o in (13, 14, 17)],
        [Msg("t", 0, o, value(o)) for o in range(7, 12)]
        + [Msg("t", 1, o, value(o)) for o in (19, 21, 22)],
    ]
    out = run(Batching(events=100, linger_s=60, window=10), polls, monkeypatch)
    assert sorted(spans(out)) == [(0, 0, 9), (0, 10, 11), (1, 13, 19), (1, 21, 22)]


def test_a_complete_run_is_closed_at_once_and_a_full_batch_splits_a_run(
    monkeypatch: Any,
) -> None:
    polls = [[Msg("t", 0, o, value(o)) for o in range(0, 10)]]
    out = run(Batching(events=100, linger_s=60, window=10), polls, monkeypatch)
    assert spans(out) == [(0, 0, 9)]
    out = run(Batching(events=4, linger_s=60, window=10), polls, monkeypatch)
    assert spans(out) == [(0, 0, 3), (0, 4, 7), (0, 8, 9)]


@pytest.mark.parametrize("window", [None, 10])
def test_linger(window: int | None) -> None:
    from connector.pipeline.checkpoint import PartitionState

    out: list[list[Item]] = []
    b = Batches(Batching(events=100, linger_s=1.0, window=window), out.append)
    state = PartitionState("t", 0)
    batch = b.for_state(state)
    assert batch.end == (NO_END if window is None else 0)
    if window:
        batch = b.start_window(state, 3)
        assert batch.end == 10
    batch.started = 100.0
    record = SourceRecord("t", 0, 3, 1, None, b"")
    batch.append(Item(MeterEvent("c", "m", 1, 1, "u"), record, state))
    assert b.wait_s(5.0) == 0.0  # lingered since 100.0 (monotonic now is later)
    b.close_due(100.5)
    assert out == []
    b.close_due(101.0)
    assert len(out) == 1
