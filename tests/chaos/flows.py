"""Faults timed against the flow of records: each lands while a chunk of the workload is
being delivered (asserted), however fast or loaded the machine is."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.chaos.harness import Chaos
from tests.chaos.workload import Feeder, Workload
from tests.integration.harness import wait_until

SEED = 14


def interrupt_while_flowing(
    c: Chaos, w: Workload, times: int, interrupt: Callable[[int], None], exact: bool = True
) -> list[int]:
    """Produce the workload in ``times + 1`` chunks and call ``interrupt(k)`` at a random
    point of chunk ``k``'s delivery, for the first ``times`` chunks; returns the records
    stored at each.

    ``exact`` (the process under test stores each record at most once): the point is a
    random share (10-80%) of the chunk, once the chunks before it are all stored, and is
    asserted to be mid-stream.  Otherwise (the SDK loop, which loses and duplicates
    records, so the stored count says little) it is a random 0.5-3 s into the chunk.
    """
    rng = random.Random(SEED)
    bounds = [round(w.n * j / (times + 1)) for j in range(times + 2)]
    points = []
    for k in range(times):
        first, end = w.valid_below(bounds[k]), w.valid_below(bounds[k + 1])
        if exact:
            c.wait_stored(first, 300, f"the records before chunk {k + 1} stored")
        before = c.stored()
        Feeder(c.kafka, c.topic, w, records=range(bounds[k], bounds[k + 1])).produce()
        if exact:
            target = first + round(rng.uniform(0.1, 0.8) * (end - first))
            c.wait_stored(target, 300, f"{target:,} stored (fault {k + 1})")
        else:
            wait_until(lambda b=before: c.stored() > b, 60, f"delivery before fault {k + 1}")
            time.sleep(rng.uniform(0.5, 3.0))
        stored = c.stored()
        if exact:
            assert stored < end, f"fault {k + 1} is not mid-stream ({stored:,} of {end:,})"
        points.append(stored)
        interrupt(k)
    Feeder(c.kafka, c.topic, w, records=range(bounds[-2], bounds[-1])).produce()
    return points


def kill_while_flowing(
    c: Chaos, w: Workload, kills: int, start: Callable[[], object], exact: bool = True
) -> None:
    """kill -9 ``kills`` times mid-stream, starting the process again each time."""

    def kill(_k: int) -> None:
        c.kill()
        killed = time.monotonic()
        start()
        c.recovered_since(killed)

    points = interrupt_while_flowing(c, w, kills, kill, exact)
    c.row.faults.append(f"kill -9 ×{kills} (at {', '.join(f'{p:,}' for p in points)} stored)")


# Delivery held to about 4,000 events/s (100-event batches, 4 in flight, 100 ms per request:
# the scenarios add that /ingest latency), so that a fault lands while a chunk is being
# delivered however fast the machine is.
SLOW = {"CONNECTOR_SINK__BATCH_SIZE": "100"}
