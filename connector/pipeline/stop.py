"""The graceful stop: SIGTERM/SIGINT, the stop deadline, and a start-up a signal ends at once.

* First signal: ``event`` is set and ``deadline`` is ``shutdown_timeout_s`` from now.  The
  worker's loop ends after the step in progress; the shutdown's wait for in-flight work, and a
  revoke wait already in progress, never go past ``deadline`` (``pipeline.handover``).
* During start-up (``start``: credential check, broker wait, DLQ topics) nothing is consumed
  yet, so there is nothing to finish: the signal raises ``StopRequested`` into whatever the
  start-up waits for, and ``start`` returns False.
* A second signal exits the process at once (``128 + signum``), committing nothing more.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("connector.worker")


class StopRequested(BaseException):
    """SIGTERM/SIGINT while the worker starts: nothing is consumed yet, so nothing to finish."""


class Stop:
    def __init__(self, timeout_s: float) -> None:
        self.event = threading.Event()
        self.deadline = float("inf")  # monotonic; set by the first request
        self.starting = False
        self._timeout_s = timeout_s

    def request(self) -> None:
        """Begin the graceful stop: ``shutdown_timeout_s`` from now, everything is over."""
        if not self.event.is_set():
            self.deadline = time.monotonic() + self._timeout_s
            self.event.set()

    def install_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.event.is_set():
                log.warning("second signal: exiting at once, nothing more is committed")
                os._exit(128 + signum)
            self.request()
            if self.starting:  # interrupts whatever start-up is waiting for
                raise StopRequested(signum)
            log.info("signal %d: finishing in-flight work, then committing", signum)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def start(self, steps: Callable[[], None]) -> bool:
        """Run the start-up ``steps``; False when a signal ended them (nothing was consumed).
        Any other exception (a ``FatalError``) propagates."""
        self.starting = True
        try:
            steps()
            self.starting = False
        except StopRequested as stop:
            self.starting = False
            log.info("signal %d during start-up: stopped, nothing was consumed", stop.args[0])
            return False  # the consumer may be inside a metadata call: not closed here
        return True
