"""Figure 2: decode + transform only — the worker's own per-record code, no network.

The records are consumed from the topic into memory first; then the clock runs while the
real ``Worker._handle`` (decode, map to meter events with derived uniqueIds, checkpoint
tracking, batch assembly) processes them, with full batches dropped instead of sent.
"""

from __future__ import annotations

import gc
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Message

from benchmarks.common import API_KEY, FAST_GROUP
from connector.pipeline.batches import Batches
from connector.pipeline.interpreter import tune_interpreter
from connector.pipeline.worker import Worker
from connector.settings import Settings


def load(bootstrap: str, topic: str, n: int) -> list[Message]:
    """The first ``n`` records of ``topic`` as confluent-kafka messages (held in memory)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-load-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **FAST_GROUP,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + 120
    try:
        while len(out) < n and time.monotonic() < deadline:
            out.extend(m for m in consumer.consume(2000, 1.0) if m.error() is None)
    finally:
        consumer.close()
    if len(out) < n:
        raise TimeoutError(f"loaded {len(out):,} of {n:,} records")
    return out[:n]


def run(
    bootstrap: str,
    topic: str,
    messages: list[Message],
    poll_batch: int = 2000,
    mappings: list[dict[str, Any]] | None = None,
    **more: Any,
) -> float:
    """Records per CPU second (main thread) of ``Worker._handle`` over ``messages`` in
    poll-sized slices (with
    ``mappings`` and ``more`` settings: the mapped formats' figures, ``benchmarks.formats``)."""
    settings = Settings(
        kafka={"bootstrap_servers": bootstrap, "topics": [topic]},
        amberflo={"api_key": API_KEY, "base_url": "http://127.0.0.1:9"},
        metrics_port=0,
        mappings=mappings or [],
        **more,
    )
    worker = Worker(settings)
    for partition in {m.partition() for m in messages}:  # as on_assign would
        worker.checkpoint.assign(topic, partition)
    dropped = 0

    def submit(batch: Any) -> None:
        nonlocal dropped
        dropped += len(batch)
        worker.budget.release(len(batch))  # as a delivery thread does

    worker._batches = Batches(worker.sink.batching, submit)
    handle: Any = worker._handle
    tune_interpreter()  # as Worker.run() does
    # The main thread's CPU time, not the wall clock: the loop is one thread's CPU work, and
    # on a shared 2-core machine (the broker, other processes) the wall clock also counts the
    # time the thread waited for a core, which moved one run's format ratios from 27% to 115%.
    started = time.thread_time()
    for i in range(0, len(messages), poll_batch):
        handle(messages[i : i + poll_batch])
        # what Deliveries.drain does once the batches are delivered: the records are done
        for state in worker.checkpoint.partitions.values():
            state.pending.clear()
    elapsed = max(time.thread_time() - started, 1e-9)
    worker._batches.close_all()
    gc.unfreeze()
    worker.source.close()
    if dropped != len(messages):
        raise RuntimeError(f"{dropped:,} events from {len(messages):,} records")
    return len(messages) / elapsed
