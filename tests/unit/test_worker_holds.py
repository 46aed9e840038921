"""``Worker`` when a decoder cannot read a record for lack of infrastructure (a schema
registry that is down: ``RetryableError``): the partition is rewound to the record and paused,
nothing at or past it is tracked or committed, other partitions go on, and the partition is
fetched again after a backoff — never dead-lettered."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from connector.errors import FatalError, RetryableError
from connector.formats.native import map_json
from connector.pipeline.worker import Worker
from connector.records import MeterEvent, SourceRecord
from connector.sinks.base import Outcome
from tests.unit.test_worker import (
    FakeDlq,
    FakeSource,
    Msg,
    batched,
    ledger,
    make,
    take_batch,
    usage,
)

__all__ = ["ledger", "make"]  # the fixtures, shared with test_worker

Make = Callable[..., tuple[Worker, FakeSource, FakeDlq]]


class Registry:
    """A decoder's infrastructure: up or down.  A record whose value starts with ``avro``
    needs it; every other record maps as native."""

    def __init__(self, worker: Worker) -> None:
        self.up = True
        self.calls = 0
        ids = worker.mappers._ids

        def mapper(record: SourceRecord) -> list[MeterEvent]:
            if record.value and record.value.startswith(b"avro"):
                self.calls += 1
                if not self.up:
                    raise RetryableError("Schema Registry at http://sr.test unreachable")
                record = record._replace(value=record.value[4:])
            return map_json(record, ids)

        worker.mappers.for_topic = lambda _topic: mapper  # type: ignore[method-assign]


def avro(i: int) -> bytes:
    return b"avro" + usage(i)


def test_a_record_waiting_for_the_registry_rewinds_its_partition_only(make: Make) -> None:
    worker, source, dlq = make(retry_initial_s=0.05, retry_max_s=0.05)
    registry = Registry(worker)
    worker._on_assign([("t", 0), ("t", 1)])
    registry.up = False
    worker._handle(
        [
            Msg("t", 0, 0, usage(0)),
            Msg("t", 0, 1, avro(1)),
            Msg("t", 0, 2, usage(2)),
            Msg("t", 1, 0, usage(9)),
            Msg("t", 0, 3, b"{bad"),
            Msg("t", 1, 1, avro(10)),
        ]
    )
    # Partition 0: record 0 taken, rewound to 1; 2 and 3 (even the bad one) left for later.
    # Partition 1: record 0 taken, then its own avro record waits too.
    assert source.held == {("t", 0): 1, ("t", 1): 1}
    assert [(i.record.partition, i.record.offset) for i in batched(worker)] == [(0, 0), (1, 0)]
    assert dlq.letters == []
    assert registry.calls == 2  # the rest of a held partition is not even decoded
    worker._deliveries.done.put(Outcome(delivered=take_batch(worker)))
    worker._deliveries.drain()
    worker._commits.commit()
    assert source.committed_offsets() == {("t", 0): 1, ("t", 1): 1}  # not past the waiting ones

    # A later poll may still hold records fetched before the rewind: dropped, not decoded.
    worker._handle([Msg("t", 0, 2, usage(2))])
    assert batched(worker) == [] and registry.calls == 2

    time.sleep(0.06)
    worker._release_due()
    assert sorted(source.released) == [("t", 0), ("t", 1)] and source.held == {}
    registry.up = True
    worker._handle([Msg("t", 0, o, v) for o, v in ((1, avro(1)), (2, usage(2)), (3, b"{bad"))])
    assert [i.record.offset for i in batched(worker)] == [1, 2]
    assert [letter.record.offset for letter, _a, _w in dlq.letters] == [3]  # the bad one
    assert ("t", 0) not in worker._holds  # reading again: the backoff starts over next time
    assert ("t", 1) in worker._holds


def test_backoff_grows_and_stops_the_connector_after_the_retry_timeout(make: Make) -> None:
    worker, source, _dlq = make(retry_initial_s=0.01, retry_max_s=0.04, retry_timeout_s=0.2)
    registry = Registry(worker)
    worker._on_assign([("t", 0)])
    registry.up = False
    delays = []
    deadline = time.monotonic() + 5
    with pytest.raises(FatalError, match=r"t\[0\] could not be decoded for \d+s .*RETRY_TIMEOUT_S"):
        while time.monotonic() < deadline:
            worker._handle([Msg("t", 0, 7, avro(7))])
            hold = worker._holds[("t", 0)]
            delays.append(hold.until - time.monotonic())
            time.sleep(max(0.0, hold.until - time.monotonic()))
            worker._release_due()
    assert len(delays) >= 3
    assert max(delays) <= 0.04 and delays[0] <= 0.01
    assert source.committed_offsets() == {}


def test_a_revoked_partition_is_no_longer_held(make: Make) -> None:
    worker, source, _dlq = make()
    registry = Registry(worker)
    worker._on_assign([("t", 0)])
    registry.up = False
    worker._handle([Msg("t", 0, 4, avro(4))])
    assert source.held == {("t", 0): 4}
    worker._on_revoke([("t", 0)])
    assert source.held == {} and worker._holds == {}
    assert source.committed_offsets() == {}
