"""``amberflo-connector produce``: publish sample usage, in any format the connector reads."""

from __future__ import annotations

import click

from connector.cli.options import CUSTOMERS_OPTION, sample_format_option


def _properties(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        out[key] = value
    return out


@click.command(short_help="Publish sample usage to a topic, in any format.")
@click.option("--topic", required=True, help="Topic to publish to.")
@click.option(
    "--events",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Usage records to publish.",
)
@sample_format_option("Record format (avro: Confluent wire format through the Schema Registry).")
@CUSTOMERS_OPTION
@click.option(
    "--bootstrap-servers",
    envvar="CONNECTOR_KAFKA__BOOTSTRAP_SERVERS",
    default="localhost:9092",
    show_default=True,
    help="Kafka bootstrap servers (env CONNECTOR_KAFKA__BOOTSTRAP_SERVERS).",
)
@click.option(
    "--schema-registry",
    envvar="CONNECTOR_SCHEMA_REGISTRY__URL",
    help="Schema Registry URL for --format avro (env CONNECTOR_SCHEMA_REGISTRY__URL).",
)
@click.option(
    "-X",
    "properties",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_properties,
    help="A librdkafka producer property, e.g. -X security.protocol=SASL_SSL (repeatable).",
)
def produce(
    topic: str,
    events: int,
    fmt: str,
    customers: int,
    bootstrap_servers: str,
    schema_registry: str | None,
    properties: dict[str, str],
) -> None:
    """Publish sample usage to a topic, in any format the connector reads.

    The usage goes to three meters (api-calls, storage-gb-hours, compute-seconds) over the
    last hour. At the end it prints the totals per meter and, for a format other than native,
    the `mappings` entry that reads the records (see connector/samples.py for the shapes).

    \b
    Examples:
      amberflo-connector produce --topic usage-events --events 10000
      amberflo-connector schema-registry --port 8081 &
      amberflo-connector produce --topic usage-avro --events 1000 --format avro \\
          --schema-registry http://127.0.0.1:8081
    """
    import yaml
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from connector.errors import FatalError
    from connector.samples import encode, mappings, publish, totals, usage

    if fmt == "avro" and not schema_registry:
        raise click.UsageError(
            "--format avro needs --schema-registry URL (or CONNECTOR_SCHEMA_REGISTRY__URL)"
        )
    console = Console(stderr=True)
    facts = usage(events, customers)
    try:
        records = encode(fmt, facts, topic, schema_registry)
    except Exception as exc:  # the registry: unreachable, refused the schema, …
        if isinstance(exc, FatalError):
            raise
        raise FatalError(
            f"cannot register the usage schema with the Schema Registry at {schema_registry}: {exc}"
        ) from exc
    with Progress(
        TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        publish(bootstrap_servers, topic, records, progress, properties)
    by_meter: dict[str, float] = {}
    for (meter, _customer), value in totals(facts).items():
        by_meter[meter] = by_meter.get(meter, 0) + value
    click.echo(f"Published {events:,} usage records ({fmt}) to {topic} at {bootstrap_servers}.")
    for meter, value in sorted(by_meter.items()):
        click.echo(f"  {meter}: {value:,.2f}")
    entry = mappings(fmt, topic)
    if entry:
        click.echo("The connector reads them with this mappings entry (docs/mappings.md):")
        click.echo(yaml.safe_dump({"mappings": entry}, sort_keys=False).rstrip())
