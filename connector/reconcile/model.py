"""The pure part of reconciliation: windows and buckets, and what Kafka holds per cell.  No
I/O, so every rule here is unit-tested; the judgement of a cell is ``cells``.

A *cell* is (meterApiName, customerId, bucket start in epoch seconds, UTC).

What Kafka holds for a cell is split three ways:

* **committed**: events of records below the connector group's committed offset that are not
  on the dead-letter topic.  Amberflo must hold every one of them.
* **in flight**: events of records at or past the committed offset.  Amberflo may hold any of
  them (delivered, not yet committed) or none (not yet delivered).
* **dead-lettered**: events of records whose dead letter is on the DLQ (a record Amberflo
  refused, stage ``sink``).  Amberflo may hold some of them (a record whose other events were
  accepted) until the letter is replayed.

Apart from those, the tally keeps per cell the **filtered** events: those a mapping's filters
exclude (the events the record would have become without its mapping's filters).  The
connector never sends them, so they are never expected; they only name the likely cause when
Amberflo holds more than Kafka does (``cells.judge``).

Amberflo deduplicates identical events, so events are counted once per distinct event: a
second event with the same uniqueId and the same body (a re-produced record with its own
uniqueId, a replayed dead letter) is a *duplicate* and adds nothing.  The same uniqueId with a
different body is a *collision*: Amberflo (whole-record dedupe) counts both, and so does the
expectation, but the report names the id because a producer reusing ids is usually a bug.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from connector.records import MeterEvent
from connector.timefmt import ms_to_iso, parse_time

Cell = tuple[str, str, int]
"""(meterApiName, customerId, bucket start in epoch seconds)."""
Kind = Literal["committed", "in flight", "dead-lettered", "filtered"]

INTERVAL_SECONDS = {"hour": 3600, "day": 86400}
_RELATIVE = re.compile(r"^-\s*(\d+)\s*([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now_ms: int | None = None) -> int:
    """Epoch ms of ``text``: ``now``, a relative ``-90m`` / ``-2h`` / ``-1d``, epoch
    milliseconds, or ISO-8601 (UTC unless a zone is given).  Raises ``ValueError``."""
    text = text.strip().lower()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - int(m.group(1)) * _UNIT_S[m.group(2)] * 1000
    return parse_time(text.upper() if "t" in text else text)


def iso(ms: int) -> str:
    """``2026-01-01T10:00:00Z`` (seconds precision)."""
    return ms_to_iso(ms, "seconds", zulu=True)


@dataclass(frozen=True, slots=True)
class Window:
    """``[start_ms, end_ms)`` on bucket boundaries of ``interval`` (hour or day, UTC)."""

    interval: str
    start_ms: int
    end_ms: int

    @classmethod
    def of(cls, interval: str, from_ms: int, to_ms: int) -> Window:
        """Both ends rounded down to the interval; ``ValueError`` when nothing is left."""
        step = INTERVAL_SECONDS[interval] * 1000
        start, end = from_ms - from_ms % step, to_ms - to_ms % step
        if end <= start:
            raise ValueError(
                f"--from {iso(from_ms)} and --to {iso(to_ms)} span no whole {interval} "
                f"(both are rounded down to the {interval})"
            )
        return cls(interval, start, end)

    @property
    def step_s(self) -> int:
        return INTERVAL_SECONDS[self.interval]

    def bucket(self, time_ms: int) -> int:
        """Start (epoch seconds) of the bucket holding ``time_ms``."""
        s = time_ms // 1000
        return s - s % self.step_s

    @property
    def buckets(self) -> int:
        return (self.end_ms - self.start_ms) // (self.step_s * 1000)


class Pending:
    """In-flight and dead-lettered events of one cell (what Amberflo may or may not hold), or
    its filtered events (what Amberflo should not hold)."""

    __slots__ = ("count", "kinds", "neg", "pos")

    def __init__(self) -> None:
        self.pos = 0.0
        self.neg = 0.0
        self.count = 0
        self.kinds: set[str] = set()

    def add(self, value: float, kind: str) -> None:
        if value >= 0:
            self.pos += value
        else:
            self.neg += value
        self.count += 1
        self.kinds.add(kind)


@dataclass
class Tally:
    """What Kafka holds per cell, fed event by event (see the module docstring)."""

    window: Window
    meters: frozenset[str] | None = None
    committed: dict[Cell, list[float]] = field(default_factory=dict)
    """cell → [sum, count] of committed events."""
    events: int = 0
    """Distinct events inside the window (and of the selected meters)."""
    duplicates: int = 0
    outside: int = 0
    """Events outside the window or of other meters (not checked)."""
    collisions: dict[str, int] = field(default_factory=dict)
    """uniqueId → distinct bodies carried, for ids carried by more than one."""
    _seen: dict[str, int] = field(default_factory=dict)
    _collided: dict[str, set[int]] = field(default_factory=dict)
    filtered_events: int = 0
    """Distinct filtered events inside the window (and of the selected meters)."""
    _maybe: list[tuple[str, int, Cell, float, str]] = field(default_factory=list)
    _excluded: list[tuple[str, int, Cell, float, str]] = field(default_factory=list)
    _pending_seen: set[tuple[str, int]] = field(default_factory=set)

    def add(self, events: Iterable[MeterEvent], kind: Kind) -> None:
        lo, hi = self.window.start_ms, self.window.end_ms
        step = self.window.step_s
        meters = self.meters
        for event in events:
            body: dict[str, Any] = event.payload()
            t: int = body["meterTimeInMillis"]
            meter: str = body["meterApiName"]
            if not lo <= t < hi or (meters is not None and meter not in meters):
                self.outside += kind != "filtered"
                continue
            customer: str = body["customerId"]
            value: float = body["meterValue"]
            dims = body.get("dimensions")
            h = hash((customer, meter, value, t, tuple(sorted(dims.items())) if dims else ()))
            uid: str = body["uniqueId"]
            s = t // 1000
            cell = (meter, customer, s - s % step)
            if kind != "committed":
                (self._excluded if kind == "filtered" else self._maybe).append(
                    (uid, h, cell, value, kind)
                )
                continue
            if not self._first(uid, h):
                self.duplicates += 1
                continue
            self.events += 1
            agg = self.committed.get(cell)
            if agg is None:
                self.committed[cell] = [value, 1]
            else:
                agg[0] += value
                agg[1] += 1

    def _first(self, uid: str, h: int) -> bool:
        """Whether (uid, body hash) is new among committed events; notes collisions."""
        prev = self._seen.get(uid)
        if prev is None:
            self._seen[uid] = h
            return True
        if prev == h:
            return False
        bodies = self._collided.get(uid)
        if bodies is None:
            bodies = self._collided[uid] = {prev}
        if h in bodies:
            return False
        bodies.add(h)
        self.collisions[uid] = len(bodies)
        return True

    def _known(self, uid: str, h: int) -> bool:
        prev = self._seen.get(uid)
        return prev == h or h in self._collided.get(uid, ())

    def pending(self) -> dict[Cell, Pending]:
        """In-flight and dead-lettered events per cell, each distinct event once, leaving out
        those identical to a committed event (Amberflo holds that one already)."""
        self._pending_seen = set()
        out, kept = self._per_cell(self._maybe, self._pending_seen)
        self.duplicates += len(self._maybe) - kept
        self.events += kept
        self._maybe = []
        return out

    def filtered(self) -> dict[Cell, Pending]:
        """Filtered events per cell, each distinct event once, leaving out those identical to
        an event Kafka holds otherwise (Amberflo holding it is expected).  Call after
        ``pending``."""
        out, kept = self._per_cell(self._excluded, self._pending_seen)
        self.filtered_events += kept
        self._excluded = []
        return out

    def _per_cell(
        self, items: list[tuple[str, int, Cell, float, str]], done: set[tuple[str, int]]
    ) -> tuple[dict[Cell, Pending], int]:
        """The distinct events of ``items`` per cell, none identical to a committed event or
        to one in ``done`` (which it extends), and how many there are."""
        out: dict[Cell, Pending] = {}
        kept = 0
        for uid, h, cell, value, kind in items:
            key = (uid, h)
            if key in done or self._known(uid, h):
                continue
            done.add(key)
            kept += 1
            p = out.get(cell)
            if p is None:
                p = out[cell] = Pending()
            p.add(value, kind)
        return out, kept
