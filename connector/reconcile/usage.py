"""What Amberflo holds: SUM and COUNT per meter × customer × bucket from the usage API, in
batched queries grouped by customerId over exactly the reconciled window."""

from __future__ import annotations

from collections.abc import Iterable

from connector.amberflo.client import AmberfloClient
from connector.amberflo.models import Aggregation, Interval, UsageQuery, UsageReport, usage_query
from connector.amberflo.status import AmberfloApiError
from connector.reconcile.model import Cell, Window

BATCH = 50
"""Queries per ``/usage/batch`` request."""
AGGREGATIONS: tuple[Aggregation, Aggregation] = ("SUM", "COUNT")
INTERVALS: dict[str, Interval] = {"hour": "HOUR", "day": "DAY"}


def queries(meters: Iterable[str], window: Window) -> list[UsageQuery]:
    """A SUM and a COUNT query per meter, grouped by customerId, bucketed like ``window``."""
    return [
        usage_query(
            meter,
            window.start_ms // 1000,
            window.end_ms // 1000,
            aggregation=aggregation,
            interval=INTERVALS[window.interval],
            group_by=["customerId"],
        )
        for meter in sorted(meters)
        for aggregation in AGGREGATIONS
    ]


def fold(cells: dict[Cell, list[float]], query: UsageQuery, report: UsageReport) -> None:
    """Add one report's non-zero values to ``cells`` (cell → [sum, count])."""
    index = AGGREGATIONS.index(query.aggregation)
    for series in report.client_meters:
        customer = series.group_info.get("customerId", "")
        for point in series.values:
            if point.value:
                cell = (query.meter_api_name, customer, point.seconds_since_epoch_utc)
                cells.setdefault(cell, [0.0, 0])[index] = point.value


def amberflo_cells(
    client: AmberfloClient, meters: Iterable[str], window: Window
) -> tuple[dict[Cell, list[float]], list[str]]:
    """Amberflo's cells for ``meters`` over ``window``, and notes on meters it refused to
    report (their cells then read as empty: what Kafka holds there shows as missing)."""
    cells: dict[Cell, list[float]] = {}
    notes: list[str] = []
    todo = queries(meters, window)
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        try:
            reports = client.usage_batch(chunk)
        except AmberfloApiError:
            reports = _one_by_one(client, chunk, notes)
        for query, report in zip(chunk, reports, strict=True):
            fold(cells, query, report)
    return cells, notes


def _one_by_one(
    client: AmberfloClient, chunk: list[UsageQuery], notes: list[str]
) -> list[UsageReport]:
    """A refused batch, query by query, so that one refused meter does not hide the rest."""
    out: list[UsageReport] = []
    for query in chunk:
        try:
            out.append(client.usage(query))
        except AmberfloApiError as exc:
            if query.aggregation == AGGREGATIONS[0]:
                notes.append(
                    f"Amberflo refused the usage query of meter {query.meter_api_name!r}: {exc}"
                )
            out.append(UsageReport())
    return out
