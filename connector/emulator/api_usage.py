"""Usage reports: ``POST /usage``, ``POST /usage/batch`` and ``GET /usage/all``.

The report semantics are in ``connector.emulator.usage``.  ``/usage/all`` reports, with SUM,
every meter that has records in the window, in meterApiName order.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from connector.emulator.models import UsageQueryIn
from connector.emulator.state import ApiError, EmulatorState, state
from connector.emulator.usage import (
    MAX_SECONDS,
    UsageQuery,
    UsageQueryError,
    UsageRow,
    compute_report,
    parse_query,
)

router = APIRouter(tags=["Usage"])

MAX_BATCH = 100


def _parse(raw: dict[str, Any]) -> UsageQuery:
    try:
        return parse_query(raw)
    except UsageQueryError as exc:
        raise ApiError(400, "BAD_REQUEST", str(exc)) from exc


def _report(st: EmulatorState, query: UsageQuery) -> dict[str, Any]:
    lo, hi = query.window_ms
    rows: list[UsageRow] = [
        (customer, t, value, dims)
        for _, customer, t, value, dims in st.store.usage_rows(query.meter_api_name, lo, hi)
    ]
    return compute_report(query, rows)


@router.post("/usage", summary="One usage report")
def query_usage(request: Request, query: UsageQueryIn) -> dict[str, Any]:
    """The live report shape: metadata, secondsSinceEpochIntervals, clientMeters."""
    return _report(state(request), _parse(query.model_dump(exclude_none=True)))


@router.post("/usage/batch", summary="Several usage reports")
def query_usage_batch(
    request: Request, queries: Annotated[list[UsageQueryIn], Body(max_length=MAX_BATCH)]
) -> list[dict[str, Any]]:
    """One report per query, in order."""
    st = state(request)
    parsed = [_parse(q.model_dump(exclude_none=True)) for q in queries]
    return [_report(st, q) for q in parsed]


@router.get("/usage/all", summary="SUM reports for every meter")
def query_usage_all(
    request: Request,
    startTimeInSeconds: int = Query(ge=1, le=MAX_SECONDS),
    endTimeInSeconds: int | None = Query(None, ge=1, le=MAX_SECONDS),
    timeGroupingInterval: str = Query("DAY", pattern=r"^(?i:HOUR|DAY|WEEK|MONTH)$"),
    groupBy: str | None = Query(None, pattern=r"^customerId$"),
    customerId: str | None = Query(None, min_length=1),
) -> list[dict[str, Any]]:
    """Every meter with records in the window, optionally for one customer and/or grouped by
    customerId."""
    st = state(request)
    raw: dict[str, Any] = {
        "meterApiName": "*",
        "aggregation": "SUM",
        "timeGroupingInterval": timeGroupingInterval,
        "timeRange": {"startTimeInSeconds": startTimeInSeconds},
    }
    if endTimeInSeconds is not None:
        raw["timeRange"]["endTimeInSeconds"] = endTimeInSeconds
    if groupBy:
        raw["groupBy"] = [groupBy]
    if customerId:
        raw["filter"] = {"customerId": [customerId]}
    template = _parse(raw)
    raw["timeRange"]["endTimeInSeconds"] = template.end_s  # one "now" for every meter
    lo, hi = template.window_ms
    by_meter: dict[str, list[UsageRow]] = {}
    for meter, customer, t, value, dims in st.store.usage_rows(None, lo, hi):
        if customerId is None or customer == customerId:
            by_meter.setdefault(meter, []).append((customer, t, value, dims))
    reports = []
    for meter in sorted(by_meter):
        query = _parse({**raw, "meterApiName": meter})
        reports.append(compute_report(query, by_meter[meter]))
    return reports
