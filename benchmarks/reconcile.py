"""Figure 8: ``amberflo-connector reconcile`` checking a drained topic (records/s checked).

The connector drains the benchmark topic into a fresh emulator with a fresh group and stops
(committing everything); then ``reconcile --json`` runs, as a user runs it, ``reps`` times
over the same state.  The rate is the report's own: records read and checked per second while
reading (its fixed costs, such as the idle wait that detects the end of the topic and the
usage queries, are in the wall time, reported beside it).  Every run must find every cell
matching: the figure doubles as a check of reconcile at scale.

    python -m benchmarks.reconcile --records 200000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import (
    T0_MS,
    Connector,
    Emu,
    connector_env,
    create_topic,
    emulator,
    log,
    produce,
    vm_status,
    wait_drained,
)
from connector.embedded import EmbeddedBroker

HOUR_MS = 3_600_000


def drain(bootstrap: str, topic: str, n: int, url: str, workdir: Path) -> dict[str, str]:
    """Deliver the topic with a fresh group, stop (the last commit happens on SIGTERM) and
    return the environment reconcile needs (the same group, so the same derived ids)."""
    group = f"bench-reconcile-{uuid.uuid4().hex[:8]}"
    env = connector_env(bootstrap, topic, url, group)
    stored = Emu(url).stored
    baseline = stored()
    proc = Connector(env, workdir / f"{group}.log")
    try:
        wait_drained(stored, n, 300, proc.check_alive, baseline=baseline)
    finally:
        if proc.stop() != 0:
            raise RuntimeError(f"the connector did not stop cleanly: see {proc.log_path}")
    return env


def check(env: dict[str, str], n: int, workdir: Path) -> dict[str, Any]:
    """One ``reconcile --json`` over the hours holding the benchmark records: its summary, the
    wall time and its peak RSS.  Raises unless every record was read and every cell matches."""
    end = T0_MS + ((n - 1) // HOUR_MS + 1) * HOUR_MS
    cmd = [sys.executable, "-m", "connector", "reconcile", "--json", "--wait", "1"]
    cmd += ["--from", str(T0_MS), "--to", str(end)]
    out, err = workdir / "reconcile.json", workdir / "reconcile.err"
    started = time.monotonic()
    # The peak is the child's VmHWM, read until it exits (it only grows).  Not wait4's
    # ru_maxrss: a child forked from a large parent (make bench holds every figure's records)
    # reports the parent's size it had before exec (1.4 GB "peaks" for a 330 MB reconcile).
    peak_kb = 0
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
        while proc.poll() is None:
            peak_kb = max(peak_kb, vm_status(proc.pid).get("VmHWM", 0))
            time.sleep(0.05)
    wall = time.monotonic() - started
    code = proc.returncode
    if code != 0:
        raise RuntimeError(f"reconcile exited {code}:\n{err.read_text()[-2000:]}")
    summary: dict[str, Any] = orjson.loads(out.read_bytes())["summary"]
    if summary["records_read"] != n or summary["cells_mismatched"]:
        raise RuntimeError(f"reconcile read {summary['records_read']:,} of {n:,}: {summary}")
    return {**summary, "wall_s": wall, "peak_mb": peak_kb / 1024}


def run(
    bootstrap: str, topic: str, n: int, url: str, workdir: Path, reps: int
) -> list[dict[str, Any]]:
    env = drain(bootstrap, topic, n, url, workdir)
    return [check(env, n, workdir) for _ in range(reps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amberflo-bench-") as tmp:
        workdir = Path(tmp)
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            topic = create_topic(broker.bootstrap, "bench-usage")
            produce(broker.bootstrap, topic, args.records)
            with emulator(workdir, "reconcile") as emu:
                for r in run(
                    broker.bootstrap, topic, args.records, emu.base_url, workdir, args.reps
                ):
                    log(
                        f"(8) reconcile: {r['records_per_second']:,.0f} records/s checked, "
                        f"{r['cells_checked']:,} cells, {r['wall_s']:.1f}s wall, "
                        f"peak RSS {r['peak_mb']:.0f} MB"
                    )


if __name__ == "__main__":
    main()
