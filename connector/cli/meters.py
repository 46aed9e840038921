"""``amberflo-connector meters``: meter definitions declared in the config, kept in Amberflo."""

from __future__ import annotations

import click

from connector.cli.options import (
    API_EXIT_CODES,
    CONFIG_OPTION,
    api_client,
    api_settings,
    print_table,
)


@click.group(short_help="List Amberflo's meters; sync the config's.")
def meters() -> None:
    """Meter definitions: list Amberflo's, sync the config's (the `meters` key)."""


@meters.command(
    "sync", epilog=API_EXIT_CODES, short_help="Create or update the config's meters in Amberflo."
)
@CONFIG_OPTION
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
def meters_sync(config_file: str | None, dry_run: bool) -> None:
    """Create or update the meter definitions of the config in Amberflo, printing a diff.

    \b
    Example config (YAML; or CONNECTOR_METERS__DEFINITIONS as a JSON list):
      meters:
        - meterApiName: api-calls
          label: API calls
          meterType: sum_of_all_usage
          dimensions: [region]
    \b
    Then:
      amberflo-connector meters sync --config connector.yaml --dry-run
      amberflo-connector meters sync --config connector.yaml

    A meter missing in Amberflo is created; one whose label, meterType, dimensions or
    description differ from the config is updated (fields the config leaves out are left as
    they are). Amberflo's other meters are never touched. A second run reports no change.
    `run` does the same at start with CONNECTOR_METERS__SYNC_ON_START=true.
    """
    from connector.amberflo.meters import summary, sync

    settings = api_settings(config_file)
    if not settings.meters.definitions:
        raise click.UsageError(
            "no meter definitions in the config (the `meters` key, or "
            "CONNECTOR_METERS__DEFINITIONS): nothing to sync"
        )
    with api_client(settings) as client:
        changes = sync(client, settings.meters.definitions, dry_run=dry_run)
    for change in changes:
        click.echo(change.describe())
    click.echo(summary(changes, dry_run=dry_run))


@meters.command("list", epilog=API_EXIT_CODES)
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print Amberflo's JSON.")
def meters_list(config_file: str | None, as_json: bool) -> None:
    """List the meter definitions in Amberflo.

    \b
    Example:
      CONNECTOR_AMBERFLO__API_KEY=... amberflo-connector meters list
    """
    from rich.table import Table

    from connector.cli.options import print_json

    with api_client(api_settings(config_file)) as client:
        found = client.list_meters()
    if as_json:
        print_json([m.wire() for m in found])
        return
    table = Table("meterApiName", "label", "meterType", "dimensions", "description")
    for m in sorted(found, key=lambda m: m.meter_api_name):
        table.add_row(
            m.meter_api_name, m.label or "", m.meter_type, ", ".join(m.dimensions), m.description
        )
    print_table(table)
    click.echo(f"{len(found)} meter(s)")
