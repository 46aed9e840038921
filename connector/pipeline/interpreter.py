"""CPython tuned for a worker process: cheap cyclic GC and GIL hand-offs (no effect on what is
delivered).  ``Worker.run`` calls ``tune_interpreter`` once start-up is over.

GC: the hot path allocates several container objects per record and holds up to
``max_buffered_records`` of them while they are in flight.  With the default thresholds
(700, 10, 10) the collector keeps re-scanning that live set and costs more than the pipeline
itself (measured: 13.4 → 7.0 µs per record).  Start-up objects (modules, settings) are frozen
out of the scans and young collections run every 50,000 net allocations instead of 700;
reference cycles are still collected.

GIL: the main thread is CPU-bound while the sink threads mostly wait on sockets, and each time
a sink thread (or the main thread, back from ``consume()``) wakes up it must wait for the GIL
holder's switch interval, 5 ms by default, several times per request.  That latency, not CPU,
capped a worker at 84-96k records/s into the emulator; with 0.5 ms the same run did 121-133k
(BENCHMARKS.md).
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_S = 0.0005
"""CPython's GIL switch interval in a worker process."""


def tune_interpreter() -> None:
    """Collect and freeze what start-up allocated, then set the GC thresholds and the GIL
    switch interval (process-wide)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
