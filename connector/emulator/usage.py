"""The usage report engine: pure functions from a query and stored rows to a live-shaped report.

Semantics (the live docs leave several points open; these are the emulator's choices):

* Buckets are UTC.  HOUR and DAY floor to the hour/day, WEEK to Monday 00:00 UTC (ISO weeks),
  MONTH to the 1st 00:00 UTC.  Interval and aggregation names are case-insensitive.
* The window is ``[floor(startTimeInSeconds), endTimeInSeconds)``: the first bucket is widened
  to its floor, the end is exclusive and not widened (a missing end means "now").  Every
  bucket starting inside the window is reported; empty buckets have value 0.
* SUM adds meterValue, COUNT counts records, MIN/MAX take the extreme meterValue (0 for an
  empty bucket).  ``groupValue`` is the same aggregation over the whole window.
* ``percentageFromPrevious`` is 0 for the first bucket, (cur − prev) / prev × 100 rounded to
  two decimals otherwise, and 100 whenever prev is 0 (the live rule, 0 → 0 included).
* ``groupBy`` keys are ``customerId`` or dimension names; a record lacking a grouped
  dimension is grouped under a ``groupInfo`` without that key.  Without ``groupBy`` there is
  exactly one series (always present, zeros when nothing matched) whose ``group`` is null.
* ``filter`` {key: [values]} keeps records whose key (customerId or a dimension) is one of
  the values; a record lacking the dimension does not match.  The seed's ``customerFilter``
  list is the same as ``filter.customerId``.
* ``take`` {limit, isAscending} orders groups by groupValue (descending unless isAscending)
  and keeps the first ``limit``; without ``take`` groups are sorted by their groupInfo values.
"""

from __future__ import annotations

import calendar
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

INTERVALS = ("HOUR", "DAY", "WEEK", "MONTH")
AGGREGATIONS = ("SUM", "COUNT", "MIN", "MAX")
MAX_BUCKETS = 20_000
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z

UsageRow = tuple[str, int, float, str | None]
"""(customerId, meterTimeInMillis, meterValue, dimensions as sorted JSON or None)."""


class UsageQueryError(ValueError):
    """The query cannot be answered; ``str(exc)`` says why (a 400 for the client)."""


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A validated usage query; ``metadata`` is echoed in the report."""

    meter_api_name: str
    aggregation: str
    interval: str
    start_s: int
    end_s: int
    group_by: tuple[str, ...] = ()
    filters: tuple[tuple[str, frozenset[str]], ...] = ()
    take_limit: int | None = None
    take_ascending: bool = False
    metadata: Mapping[str, Any] | None = None

    @property
    def window_ms(self) -> tuple[int, int]:
        """The record time window [start, end) in epoch milliseconds."""
        return floor_time(self.interval, self.start_s) * 1000, self.end_s * 1000


def _int(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    v = raw.get(key)
    if v is None:
        return None
    if type(v) is not int or not 0 < v <= MAX_SECONDS:
        raise UsageQueryError(f"{where}{key} must be an integer between 1 and {MAX_SECONDS}")
    return v


def parse_query(raw: Mapping[str, Any], now_s: int | None = None) -> UsageQuery:
    """Validate a live-shaped query object (seed-style top-level times are also accepted)."""
    meter = raw.get("meterApiName")
    if type(meter) is not str or not meter:
        raise UsageQueryError("meterApiName is required and must be a non-empty string")
    aggregation = str(raw.get("aggregation") or "").upper()
    if aggregation not in AGGREGATIONS:
        raise UsageQueryError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    interval = str(raw.get("timeGroupingInterval") or "").upper()
    if interval not in INTERVALS:
        raise UsageQueryError(f"timeGroupingInterval must be one of {', '.join(INTERVALS)}")
    time_range = raw.get("timeRange")
    if isinstance(time_range, Mapping):
        start = _int(time_range, "startTimeInSeconds", "timeRange.")
        end = _int(time_range, "endTimeInSeconds", "timeRange.")
    else:
        start = _int(raw, "startTimeInSeconds", "")
        end = _int(raw, "endTimeInSeconds", "")
    if start is None:
        raise UsageQueryError("timeRange.startTimeInSeconds is required")
    if end is None:
        end = int(time.time()) if now_s is None else now_s
    if end <= start:
        raise UsageQueryError("endTimeInSeconds must be after startTimeInSeconds")
    if len(bucket_starts(interval, start, end, limit=MAX_BUCKETS + 1)) > MAX_BUCKETS:
        raise UsageQueryError(f"the time range spans more than {MAX_BUCKETS} {interval} buckets")

    group_by = tuple(raw.get("groupBy") or ())
    filters: dict[str, set[str]] = {}
    for key, values in (raw.get("filter") or {}).items():
        filters.setdefault(key, set()).update(values)
    if raw.get("customerFilter"):
        filters.setdefault("customerId", set()).update(raw["customerFilter"])
    take = raw.get("take")
    limit = take.get("limit") if isinstance(take, Mapping) else None
    if limit is not None and (type(limit) is not int or limit < 1):
        raise UsageQueryError("take.limit must be a positive integer")
    ascending = bool(take.get("isAscending")) if isinstance(take, Mapping) else False

    metadata: dict[str, Any] = {
        "meterApiName": meter,
        "aggregation": aggregation,
        "timeGroupingInterval": interval,
        "timeRange": {"startTimeInSeconds": start, "endTimeInSeconds": end},
    }
    if filters:
        metadata["filter"] = {k: sorted(v) for k, v in filters.items()}
    if group_by:
        metadata["groupBy"] = list(group_by)
    if limit is not None:
        metadata["take"] = {"limit": limit, "isAscending": ascending}
    return UsageQuery(
        meter_api_name=meter,
        aggregation=aggregation,
        interval=interval,
        start_s=start,
        end_s=end,
        group_by=group_by,
        filters=tuple((k, frozenset(v)) for k, v in filters.items()),
        take_limit=limit,
        take_ascending=ascending,
        metadata=metadata,
    )


def floor_time(interval: str, seconds: int) -> int:
    """Start (epoch seconds, UTC) of the ``interval`` bucket containing ``seconds``."""
    if interval == "HOUR":
        return seconds - seconds % 3600
    day = seconds - seconds % 86400
    if interval == "DAY":
        return day
    if interval == "WEEK":
        # 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) % 7.
        return day - ((day // 86400 + 3) % 7) * 86400
    if interval == "MONTH":
        d = datetime.fromtimestamp(seconds, UTC)
        return calendar.timegm((d.year, d.month, 1, 0, 0, 0))
    raise UsageQueryError(f"unknown interval {interval!r}")


def next_bucket(interval: str, start: int) -> int:
    """The bucket start following the bucket starting at ``start``."""
    if interval == "HOUR":
        return start + 3600
    if interval == "DAY":
        return start + 86400
    if interval == "WEEK":
        return start + 7 * 86400
    d = datetime.fromtimestamp(start, UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


def bucket_starts(interval: str, start_s: int, end_s: int, limit: int = MAX_BUCKETS) -> list[int]:
    """Starts of the buckets from floor(start_s) up to (excluding) end_s, at most ``limit``."""
    out: list[int] = []
    b = floor_time(interval, start_s)
    while b < end_s and len(out) < limit:
        out.append(b)
        b = next_bucket(interval, b)
    return out


def _key_of(name: str, customer_id: str, dims: Mapping[str, str] | None) -> str | None:
    if name == "customerId":
        return customer_id
    return dims.get(name) if dims else None


def compute_report(query: UsageQuery, rows: Iterable[UsageRow]) -> dict[str, Any]:
    """The usage report for ``query`` over ``rows`` (rows outside the window are ignored)."""
    starts = bucket_starts(query.interval, query.start_s, query.end_s)
    n = len(starts)
    lo_ms, hi_ms = query.window_ms
    agg = query.aggregation
    need_dims = any(k != "customerId" for k in query.group_by) or any(
        k != "customerId" for k, _ in query.filters
    )
    series: dict[tuple[str | None, ...], list[Any]] = {}
    if not query.group_by:
        series[()] = [None] * n
    for customer_id, time_ms, value, dims_json in rows:
        if not lo_ms <= time_ms < hi_ms:
            continue
        dims = orjson.loads(dims_json) if need_dims and dims_json else None
        if any(_key_of(k, customer_id, dims) not in allowed for k, allowed in query.filters):
            continue
        key = tuple(_key_of(k, customer_id, dims) for k in query.group_by)
        cells = series.get(key)
        if cells is None:
            cells = series[key] = [None] * n
        i = bisect_right(starts, time_ms // 1000) - 1
        cur = cells[i]
        if agg == "SUM":
            cells[i] = value if cur is None else cur + value
        elif agg == "COUNT":
            cells[i] = 1 if cur is None else cur + 1
        elif agg == "MIN":
            cells[i] = value if cur is None or value < cur else cur
        else:
            cells[i] = value if cur is None or value > cur else cur

    ordered = sorted(series.items(), key=lambda kv: [(v is None, v or "") for v in kv[0]])
    meters = [_series(query, key, cells, starts) for key, cells in ordered]
    if query.take_limit is not None:
        # sort() is stable: equal groupValues keep the group order.
        meters.sort(key=lambda m: float(m["groupValue"]), reverse=not query.take_ascending)
        meters = meters[: query.take_limit]
    return {
        "metadata": dict(query.metadata or {}),
        "secondsSinceEpochIntervals": starts,
        "clientMeters": meters,
    }


def _series(
    query: UsageQuery, key: tuple[str | None, ...], cells: Sequence[Any], starts: Sequence[int]
) -> dict[str, Any]:
    present = [c for c in cells if c is not None]
    if not present:
        total = 0.0
    elif query.aggregation == "MIN":
        total = float(min(present))
    elif query.aggregation == "MAX":
        total = float(max(present))
    else:
        total = float(sum(present))
    values: list[dict[str, Any]] = []
    prev = 0.0
    for i, (start, cell) in enumerate(zip(starts, cells, strict=True)):
        value = 0.0 if cell is None else float(cell)
        values.append(
            {
                "secondsSinceEpochUtc": start,
                "value": value,
                "percentageFromPrevious": 0.0 if i == 0 else percentage(prev, value),
            }
        )
        prev = value
    group = None
    if query.group_by:
        info = {k: v for k, v in zip(query.group_by, key, strict=True) if v is not None}
        group = {"groupInfo": info}
    return {"group": group, "groupValue": total, "values": values}


def percentage(prev: float, cur: float) -> float:
    """Change from ``prev`` to ``cur`` in percent, rounded to two decimals (see module doc)."""
    if prev == 0:
        return 100.0
    return round((cur - prev) / prev * 100, 2)
