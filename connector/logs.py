"""Log formats and filters: one JSON object per line (``CONNECTOR_LOG__FORMAT=json``) for log
pipelines, and ``Repeats``, which keeps a failure that repeats many times a second (a broker
that refuses connections) to one line a minute."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


_NUMBERS = re.compile(r"\d+")
_MAX_KINDS = 1000


class Repeats(logging.Filter):
    """Lets the first record of each kind through, then at most one per ``window_s``; the one
    let through after others were held back says how many.  A record's kind is its logger and
    level and its message with every number blanked out: librdkafka repeats a broker's
    connection failure several times a second, each time with its own timings and counts.
    DEBUG records always pass (whoever turned them on wants them all)."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}
        """kind → [when one was last let through, how many were held back since]."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        message = record.getMessage()
        kind = (record.name, record.levelno, _NUMBERS.sub("#", message))
        now = self._clock()
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self.window_s:
            seen[1] += 1
            return False
        if len(self._seen) >= _MAX_KINDS:
            self._seen.clear()
        self._seen[kind] = [now, 0]
        if seen is not None and seen[1]:
            record.msg = f"{message} ({seen[1]:.0f} more like it in the last {now - seen[0]:.0f} s)"
            record.args = ()
        return True
