"""Figure 6: peak RSS of the worker draining a backlog while the sink is slowed.

The emulator delays every ``/ingest`` answer (``POST /_emulator/faults`` latency), so the
sink is slower than the consumer and the connector's backpressure (``max_buffered_records``,
``queued.max.messages.kbytes``) is what bounds memory.  Peak = the kernel's VmHWM of the
worker process (a single worker has no children), read just before it is stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Connector, Emu, connector_env, vm_status, wait_drained


def run(
    bootstrap: str,
    topic: str,
    n: int,
    emu_url: str,
    stored: Callable[[], int],
    workdir: Path,
    latency_ms: int = 25,
) -> dict[str, float]:
    """Peak RSS (MB), RSS after the drain (MB) and the drain rate (records/s)."""
    Emu(emu_url).fault(latency_ms=latency_ms, count=n // 100 + 1000, path="/ingest")
    group = f"bench-mem-{uuid.uuid4().hex[:8]}"
    base = stored()
    proc = Connector(connector_env(bootstrap, topic, emu_url, group), workdir / f"{group}.log")
    try:
        drain = wait_drained(stored, n, 600, proc.check_alive, baseline=base, interval=0.2)
        time.sleep(0.5)
        status = vm_status(proc.pid)
    finally:
        proc.stop()
    return {
        "peak_mb": status.get("VmHWM", 0) / 1024,
        "after_mb": status.get("VmRSS", 0) / 1024,
        "rate": drain.rate,
    }
