"""``amberflo-connector reconcile``: check Amberflo's usage against what Kafka holds."""

from __future__ import annotations

import sys
import time

import click

from connector.cli.options import CONFIG_OPTION, WAIT_OPTION
from connector.errors import ConfigError, ConnectorError, FatalError

EXIT_INCOMPLETE = 3


class Incomplete(FatalError):
    """Kafka or Amberflo could not be read: nothing was checked (exit 3)."""

    exit_code = EXIT_INCOMPLETE


def _when(_ctx: click.Context, param: click.Parameter, value: str) -> int:
    from connector.reconcile.model import parse_when

    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(
            "give ISO-8601 (UTC unless a zone is given), epoch milliseconds, 'now' or a "
            "relative time like -2h, -90m, -1d"
        ) from exc


@click.command(short_help="Prove Amberflo's usage equals what Kafka holds.")
@CONFIG_OPTION
@click.option(
    "--from",
    "from_ms",
    required=True,
    metavar="TIME",
    callback=_when,
    help="Start of the window (rounded down to the interval).",
)
@click.option(
    "--to",
    "to_ms",
    required=True,
    metavar="TIME",
    callback=_when,
    help="End of the window, exclusive (rounded down to the interval).",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="TOPIC",
    help="Source topic or ^regex (repeatable). Default: CONNECTOR_KAFKA__TOPICS.",
)
@click.option(
    "--meter",
    "meters",
    multiple=True,
    metavar="METER",
    help="Only this meterApiName (repeatable). Default: every meter the records map to.",
)
@click.option(
    "--interval",
    type=click.Choice(["hour", "day"]),
    default="hour",
    show_default=True,
    help="Bucket size (UTC).",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Largest difference of a cell's SUM and of its COUNT still counted as a match.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the machine-readable report (JSON) instead of lines.",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    default=None,
    help="Push the outcome to this Prometheus Pushgateway.",
)
@WAIT_OPTION
def reconcile(
    config_file: str | None,
    from_ms: int,
    to_ms: int,
    topics: tuple[str, ...],
    meters: tuple[str, ...],
    interval: str,
    tolerance: float,
    as_json: bool,
    pushgateway: str | None,
    idle_s: float,
) -> None:
    """Prove that Amberflo's usage equals what Kafka holds, cell by cell.

    Reads the topics without joining the connector's group and without committing, maps
    every record with the same configuration as `run`, sums the events of the window per
    meter × customer × interval (SUM and COUNT), and compares with Amberflo's usage API.
    Records past the group's committed offset count as in flight, records on the
    dead-letter topic as dead-lettered, records the mapping filters out are never expected.

    Prints one line per cell that differs (meter, customer, bucket, expected, in Amberflo,
    difference, events expected/in Amberflo, cause: in flight, dead-lettered, missing,
    extra), then a summary line; progress goes to stderr.

    Exit codes: 0 every cell matches (or differs only by in-flight or dead-lettered usage),
    1 a mismatch or an unaccounted record, 2 a usage or configuration error, 3 Kafka or
    Amberflo could not be read. See docs/reconcile.md.

    \b
    Example (the previous hour, as the Helm CronJob runs it):
      amberflo-connector reconcile --from -1h --to now --interval hour
      amberflo-connector reconcile --from 2026-01-01 --to 2026-01-02 --interval day --json
    """
    import orjson

    from connector.amberflo.client import AmberfloClient
    from connector.reconcile import Options, Window
    from connector.reconcile import reconcile as run_reconcile
    from connector.reconcile.report import push
    from connector.retry import RetryPolicy
    from connector.settings import load_settings

    settings = load_settings(config_file)
    try:
        window = Window.of(interval, from_ms, to_ms)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    options = Options(
        window=window,
        topics=topics,
        meters=frozenset(meters) or None,
        tolerance=tolerance,
        idle_s=idle_s,
    )
    progress = _Progress()
    try:
        retry = RetryPolicy.from_settings(
            settings.sink,
            timeout_s=settings.reconcile.retry_timeout_s,
            name="Amberflo usage query",
            timeout_key="CONNECTOR_RECONCILE__RETRY_TIMEOUT_S",
        )
        with AmberfloClient(
            settings.amberflo.base_url,
            settings.amberflo.api_key.get_secret_value(),
            timeout=settings.sink.request_timeout_s,
            retry=retry,
        ) as client:
            report = run_reconcile(settings, options, client, progress)
    except ConfigError:
        raise
    except ConnectorError as exc:
        raise Incomplete(str(exc)) from exc
    finally:
        progress.close()
    if as_json:
        click.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        for line in report.lines():
            click.echo(line)
    if pushgateway:
        try:
            push(pushgateway, report, settings.kafka.group_id, time.time())
        except OSError as exc:
            raise Incomplete(f"cannot push to the Pushgateway at {pushgateway}: {exc}") from exc
    sys.exit(report.exit_code)


class _Progress:
    """Progress on stderr: a live line on a terminal, else a line every ``EVERY_S``."""

    EVERY_S = 10.0

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last = self.started
        self.shown = False

    def __call__(self, phase: str, records: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < self.EVERY_S:
            return
        self.last = now
        rate = records / (now - self.started) if now > self.started else 0.0
        text = f"reconcile: {phase}, {records:,} records read ({rate:,.0f}/s)"
        if self.tty:
            click.echo("\r\033[K" + text, nl=False, err=True)
            self.shown = True
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)
