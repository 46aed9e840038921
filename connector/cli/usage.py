"""``amberflo-connector usage``: one meter's usage report as a table, CSV or Amberflo's JSON."""

from __future__ import annotations

import csv
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from connector.cli.options import (
    API_EXIT_CODES,
    CONFIG_OPTION,
    api_client,
    api_settings,
    print_json,
    print_table,
    time_option,
)

if TYPE_CHECKING:
    from connector.amberflo import UsageReport

SPAN_S = {"HOUR": 3600, "DAY": 86_400, "WEEK": 7 * 86_400, "MONTH": 31 * 86_400}
DEFAULT_INTERVALS = 7
LABEL_FORMAT = {"HOUR": "%Y-%m-%d %H:00", "DAY": "%Y-%m-%d", "WEEK": "%Y-%m-%d", "MONTH": "%Y-%m"}


@click.command(epilog=API_EXIT_CODES, short_help="Report a meter's usage per interval and group.")
@CONFIG_OPTION
@click.option("--meter", required=True, help="meterApiName to report.")
@time_option(
    "--from", "Start: ISO-8601 or epoch ms (default: 7 intervals before --to).", dest="from_"
)
@time_option("--to", "End: ISO-8601 or epoch ms (default: now).")
@click.option(
    "--interval",
    type=click.Choice(["hour", "day", "week", "month"], case_sensitive=False),
    default="day",
    show_default=True,
    help="Time bucket (UTC; weeks start on Monday).",
)
@click.option(
    "--group-by",
    "group_by",
    multiple=True,
    metavar="KEY",
    help="Group by customerId or a dimension (repeatable).",
)
@click.option("--customer", "customers", multiple=True, help="Only this customer (repeatable).")
@click.option(
    "--aggregation",
    type=click.Choice(["sum", "count", "min", "max"], case_sensitive=False),
    default="sum",
    show_default=True,
    help="Per interval: the sum of the values, the number of events, or the min/max value.",
)
@click.option("--json", "as_json", is_flag=True, help="Print Amberflo's report as it came.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the table as CSV.")
def usage(
    config_file: str | None,
    meter: str,
    from_: int | None,
    to: int | None,
    interval: str,
    group_by: tuple[str, ...],
    customers: tuple[str, ...],
    aggregation: str,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Report a meter's usage: one row per interval, one column per group, with the total
    (or min/max) per group in the last row and per interval in the last column.

    \b
    Examples:
      amberflo-connector usage --meter api-calls
      amberflo-connector usage --meter api-calls --from 2024-01-01 --to 2024-02-01 \\
          --interval week --group-by customerId --csv > usage.csv
      amberflo-connector usage --meter api-calls --customer acme --aggregation max --json
    """
    from connector.amberflo import usage_query

    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    bucket = interval.upper()
    end_s = (to // 1000) if to is not None else int(time.time())
    start_s = (from_ // 1000) if from_ is not None else end_s - DEFAULT_INTERVALS * SPAN_S[bucket]
    if start_s >= end_s:
        raise click.BadParameter("--from must be before --to", param_hint="--from")
    query = usage_query(
        meter,
        start_s,
        end_s,
        aggregation=aggregation.upper(),  # type: ignore[arg-type]
        interval=bucket,  # type: ignore[arg-type]
        group_by=list(group_by) or None,
        filters={"customerId": customers} if customers else None,
    )
    with api_client(api_settings(config_file)) as client:
        report = client.usage(query)
    if as_json:
        print_json(report.wire())
        return
    header, rows = table(report, bucket, aggregation.lower(), iso=as_csv)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    _print(meter, aggregation.lower(), bucket, header, rows)


def table(
    report: UsageReport, bucket: str, aggregation: str, *, iso: bool = False
) -> tuple[list[str], list[list[str]]]:
    """The report as (header, rows): intervals down, groups across, then the totals."""
    groups = sorted(report.client_meters, key=lambda m: (-m.group_value, _label(m.group_info)))
    combine = {"min": min, "max": max}.get(aggregation, sum)
    total_name = aggregation if aggregation in ("min", "max") else "total"
    header = ["interval", *(_label(g.group_info) or aggregation for g in groups)]
    if len(groups) != 1:
        header.append(total_name)
    series = [{v.seconds_since_epoch_utc: v.value for v in g.values} for g in groups]
    rows = []
    for start in report.seconds_since_epoch_intervals:
        values = [s.get(start, 0.0) for s in series]
        cells = [_when(start, bucket, iso), *map(_num, values)]
        if len(groups) != 1:
            cells.append(_num(combine(values) if values else 0.0))
        rows.append(cells)
    totals = [g.group_value for g in groups]
    last = [total_name, *map(_num, totals)]
    if len(groups) != 1:
        last.append(_num(combine(totals) if totals else 0.0))
    rows.append(last)
    return header, rows


def _label(info: dict[str, str]) -> str:
    if len(info) == 1:
        return next(iter(info.values()))
    return ", ".join(f"{k}={v}" for k, v in sorted(info.items()))


def _when(seconds: int, bucket: str, iso: bool) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return (
        moment.isoformat().replace("+00:00", "Z") if iso else moment.strftime(LABEL_FORMAT[bucket])
    )


def _num(value: float) -> str:
    return f"{value:.10g}"


def _print(
    meter: str, aggregation: str, bucket: str, header: list[str], rows: list[list[str]]
) -> None:
    from rich.table import Table

    title = f"{meter}: {aggregation} per {bucket.lower()} (UTC)"
    out = Table(*header, title=title)
    for column in out.columns[1:]:
        column.justify = "right"
    for i, row in enumerate(rows):
        out.add_row(*row, end_section=i == len(rows) - 2)
    print_table(out)
