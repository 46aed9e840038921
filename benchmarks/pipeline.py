"""Figure 3: the full connector process (``amberflo-connector run``, default settings:
commit-after-ingest, gzip, batches of 500, 4 in flight) draining the topic into a sink."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Connector, Drain, connector_env, cpu_seconds, wait_drained


def run(
    bootstrap: str,
    topic: str,
    n: int,
    url: str,
    stored: Callable[[], int],
    workdir: Path,
    timeout: float = 300,
    **env: str,
) -> Drain:
    """Start a connector with a fresh group (so fresh uniqueIds: every event is new to the
    sink), wait until ``stored()`` grew by ``n``, stop it.  Raises if it does not get there."""
    group = f"bench-pipe-{uuid.uuid4().hex[:8]}"
    baseline = stored()
    proc = Connector(connector_env(bootstrap, topic, url, group, **env), workdir / f"{group}.log")
    try:
        cpu_at_first = [0.0]

        def first() -> None:
            cpu_at_first[0] = cpu_seconds(proc.pid)

        drain = wait_drained(
            stored, n, timeout, proc.check_alive, baseline=baseline, on_first=first
        )
        spent = cpu_seconds(proc.pid) - cpu_at_first[0]
        drain.cpu_us_per_record = spent / max(drain.stored - drain.first, 1) * 1e6
        return drain
    finally:
        proc.stop()
