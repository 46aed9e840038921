"""The one retry policy for calls to Amberflo: the sink's ``/ingest`` requests and the API
client's calls (customers, plans, meters, usage) back off the same way.

``RetryPolicy.call(fn, ...)`` runs ``fn`` until it returns or raises something other than a
``RetryableError``:

* ``RetryableError`` (5xx, 408, timeouts, refused connections) → exponential backoff with
  jitter from ``initial_s`` up to ``max_s`` (``CONNECTOR_SINK__RETRY_INITIAL_S`` /
  ``…_RETRY_MAX_S``); a ``ThrottledError`` (429/503) waits at least its ``Retry-After``,
  but never longer than ``max_s`` (``amberflo.status`` already dropped one that is no delay);
* after ``timeout_s`` of failures (``None``: never) → ``FatalError`` naming ``timeout_key``;
* when ``abort`` is set (shutdown) → ``Abandoned`` at once, also in the middle of a wait;
* anything else (``FatalError``, a rejection) propagates at once, unretried.

``backing_off`` counts the calls currently waiting to retry; the worker pauses consumption
while it is non-zero.  ``fn`` must be safe to repeat: ingest is (deterministic uniqueIds), and
the API client retries only whole idempotent operations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential_jitter,
)

from connector import metrics
from connector.errors import Abandoned, FatalError, RetryableError, ThrottledError
from connector.settings import SinkSettings

P = ParamSpec("P")
T = TypeVar("T")

STUCK_LOG_INTERVAL_S = 60.0
"""After this long failing, a call logs one ERROR line per interval instead of warnings."""
STILL_WAITING_LOG_S = 60.0
"""A call waiting this long for its next attempt says so again (a long back-off or
Retry-After must not look like a hang)."""


class RetryPolicy:
    """Thread-safe: one policy serves every thread of a sink or client."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        timeout_s: float | None,
        *,
        name: str = "ingest",
        abort: threading.Event | None = None,
        log: logging.Logger | None = None,
        timeout_key: str = "CONNECTOR_SINK__RETRY_TIMEOUT_S",
        stuck_hint: str = "",
    ) -> None:
        self.name = name
        self.abort = abort or threading.Event()
        self.timeout_s = timeout_s
        self.timeout_key = timeout_key
        self.stuck_hint = stuck_hint
        self.backing_off = 0
        self._log = log or logging.getLogger("connector.retry")
        self._lock = threading.Lock()
        self._last_stuck_log = 0.0
        self._stop = stop_when_event_set(self.abort) | (
            stop_after_delay(timeout_s) if timeout_s is not None else stop_never
        )
        self.max_s = max_s
        self._backoff = wait_exponential_jitter(multiplier=initial_s, max=max_s)

    @classmethod
    def from_settings(
        cls, sink: SinkSettings, *, timeout_s: float | None = None, **kwargs: object
    ) -> RetryPolicy:
        """The sink's backoff; ``timeout_s`` (when given) replaces its retry timeout."""
        return cls(
            sink.retry_initial_s,
            sink.retry_max_s,
            sink.retry_timeout_s if timeout_s is None else timeout_s,
            **kwargs,  # type: ignore[arg-type]
        )

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, retried as the module docstring says."""
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableError),
            wait=self._wait,
            stop=self._stop,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        started = time.monotonic()
        try:
            return retrying(fn, *args, **kwargs)
        except RetryableError as exc:
            if self.abort.is_set():
                raise Abandoned("shutting down while retrying") from exc
            raise FatalError(
                f"{self.name} kept failing for {time.monotonic() - started:.0f}s "
                f"({self.timeout_key}): {exc}"
            ) from exc

    # -- tenacity hooks ---------------------------------------------------------------------
    def _wait(self, rs: RetryCallState) -> float:
        delay = float(self._backoff(rs))
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, ThrottledError) and exc.retry_after is not None:
            # the server's wish, within our own ceiling (a Retry-After of 1e20 is not a plan)
            delay = max(delay, min(exc.retry_after, self.max_s))
        return delay

    def _before_sleep(self, rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        elapsed = rs.seconds_since_start or 0.0
        now = time.monotonic()
        with self._lock:
            stuck_log_due = (
                elapsed >= STUCK_LOG_INTERVAL_S
                and now - self._last_stuck_log >= STUCK_LOG_INTERVAL_S
            )
            if stuck_log_due:
                self._last_stuck_log = now
        if stuck_log_due:
            self._log.error(
                "%s has been failing for %.0fs (attempt %d): %s%s",
                self.name,
                elapsed,
                rs.attempt_number,
                exc,
                self.stuck_hint,
            )
        else:
            self._log.warning(
                "%s attempt %d failed: %s; retrying", self.name, rs.attempt_number, exc
            )
        metrics.RETRIES.inc()

    def _sleep(self, seconds: float) -> None:
        """Wait before the next attempt (at once on ``abort``), saying every
        ``STILL_WAITING_LOG_S`` that the call is still waiting, however long the wait."""
        with self._lock:
            self.backing_off += 1
            metrics.BACKING_OFF.inc()
        try:
            deadline = time.monotonic() + seconds
            while not self.abort.wait(min(STILL_WAITING_LOG_S, seconds)):
                seconds = deadline - time.monotonic()
                if seconds <= 0:
                    break
                self._log.warning(
                    "%s still waiting to retry: next attempt in %.0fs", self.name, seconds
                )
        finally:
            with self._lock:
                self.backing_off -= 1
                metrics.BACKING_OFF.dec()
