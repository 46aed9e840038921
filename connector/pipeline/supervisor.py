"""``run --workers N``: N worker processes in one consumer group.

The parent forwards SIGTERM/SIGINT to every child and waits.  Each child runs in a process
group of its own, so a Ctrl-C in a terminal (SIGINT to the foreground group) reaches it once,
through the parent, and means a graceful stop (a second one: stop at once).  When a child exits
non-zero the others are stopped gracefully and the parent exits with that child's code; it
exits 0 only when every child did.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger("connector.supervisor")


def supervise(
    config_file: str | None, workers: int, metrics_port: int, *, debug: bool = False
) -> int:
    cmd = [sys.executable, "-m", "connector", *(["--debug"] if debug else []), "run"]
    cmd += ["--workers", "1"]
    if config_file:
        cmd += ["--config", config_file]
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)  # before any child exists: none is ever orphaned
    signal.signal(signal.SIGINT, forward)
    for i in range(workers):
        env = dict(os.environ)
        env["CONNECTOR_METRICS_PORT"] = str(metrics_port + i if metrics_port else 0)
        children.append(subprocess.Popen(cmd, env=env, process_group=0))
    log.info("started %d workers: %s", workers, ", ".join(str(c.pid) for c in children))
    failed = 0
    while any(c.poll() is None for c in children):
        for c in children:
            code = c.poll()
            if code not in (None, 0) and not failed:
                failed = code if code > 0 else 128 - code
                log.error("worker %d exited with code %s; stopping the others", c.pid, code)
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    if not failed:
        failed = next((c.returncode for c in children if c.returncode), 0)
        if failed < 0:
            failed = 128 - failed
    return failed
