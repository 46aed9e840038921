"""Figure 1, the limit: a bare confluent-kafka ``consume(num_messages=…)`` loop, no processing."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from benchmarks.common import FAST_GROUP


def run(bootstrap: str, topic: str, n: int, batch: int = 2000) -> float:
    """Records/s of a fresh group reading ``n`` records; the clock starts at the first record
    (the group join is excluded) and counts the records after that first batch."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-bare-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **FAST_GROUP,
        }
    )
    consumer.subscribe([topic])
    try:
        seen = 0
        first_n = 0
        started = 0.0
        deadline = time.monotonic() + 120
        while seen < n:
            messages = consumer.consume(batch, 1.0)
            for m in messages:
                if m.error() is None:
                    seen += 1
            if seen and not started:
                started, first_n = time.perf_counter(), seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consume: {seen:,} of {n:,} records")
        return (seen - first_n) / (time.perf_counter() - started)
    finally:
        consumer.close()
