"""Faults timed against the flow of records: each lands while a chunk of the workload is
being delivered (asserted), however fast or loaded the machine is."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.chaos.harness import Chaos, scale
from tests.chaos.workload import Feeder, Workload
from tests.integration.harness import wait_until

SEED = 14


def interrupt_while_flowing(
    c: Chaos, w: Workload, times: int, interrupt: Callable[[int], None], exact: bool = True
) -> list[int]:
    """Produce the workload in ``times + 1`` chunks; while each of the first ``times`` chunks
    is being delivered, call ``interrupt(k)`` at a random moment, asserted to be mid-stream
    (the emulator holds some of the chunk, not all; only checkable when the process under
    test stores each record at most once: ``exact``).  Returns the records stored at each."""
    rng = random.Random(SEED)
    bounds = [round(w.n * j / (times + 1)) for j in range(times + 2)]
    points = []
    for k in range(times):
        before = c.stored()
        Feeder(c.kafka, c.topic, w, records=range(bounds[k], bounds[k + 1])).produce()
        wait_until(lambda b=before: c.stored() > b, 60, f"delivery before fault {k + 1}")
        time.sleep(rng.uniform(0.05, 0.4))
        stored = c.stored()
        if exact:
            assert stored < w.valid_below(bounds[k + 1]), f"fault {k + 1} is not mid-stream"
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


# Delivery held to a few thousand events/s (small batches, 100 ms per request), so that a
# fault lands while a chunk is being delivered however fast the machine is.
SLOW = {"CONNECTOR_SINK__BATCH_SIZE": str(scale(100, 500))}
