"""``amberflo-connector demo``: the whole product on this machine."""

from __future__ import annotations

import sys

import click

from connector.cli.options import CUSTOMERS_OPTION, sample_format_option


@click.command(short_help="Run everything locally, then check the totals.")
@click.option(
    "--events",
    default=100_000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Sample usage records to produce.",
)
@CUSTOMERS_OPTION
@sample_format_option(
    "Format of the sample records; the connector reads them with the matching mapping "
    "(avro: through a local Schema Registry)."
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the broker, emulator and connector up afterwards and print addresses.",
)
@click.option(
    "--sink",
    type=click.Choice(["api", "s3"]),
    default="api",
    show_default=True,
    help="api: the connector calls the emulator's /ingest; s3: it writes objects to a local "
    "S3 server (moto) whose bucket the emulator ingests, as Amberflo's S3 ingestion does.",
)
def demo(events: int, customers: int, fmt: str, keep_running: bool, sink: str) -> None:
    """Run everything locally: embedded Kafka + Amberflo emulator + sample data + connector.

    Prints a usage table per meter and customer from the emulator's /usage API, the number of
    dead letters, and a check that the totals in Amberflo equal the totals produced. Exits 0
    when they match, 1 when not.

    \b
    Examples:
      amberflo-connector demo --events 20000 --format avro
      amberflo-connector demo --sink s3
    """
    from rich.console import Console

    from connector.demo import run_demo

    sys.exit(run_demo(events, customers, keep_running, Console(), fmt, sink))
