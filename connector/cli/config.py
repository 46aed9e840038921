"""``amberflo-connector config``: the configuration reference and a validator."""

from __future__ import annotations

import click

from connector.cli.options import CONFIG_OPTION


@click.group(short_help="Inspect and validate configuration.")
def config() -> None:
    """Inspect and validate configuration."""


@config.command("reference", short_help="Print the configuration reference as Markdown.")
def config_reference() -> None:
    """Print the configuration reference (every key, default and rule) as Markdown.

    \b
    Example (docs/configuration.md is this output):
      amberflo-connector config reference > docs/configuration.md
    """
    from connector.settings import reference_markdown

    click.echo(reference_markdown(), nl=False)


@config.command("check", short_help="Validate the configuration; exit 2 when invalid.")
@CONFIG_OPTION
def config_check(config_file: str | None) -> None:
    """Validate the configuration and print it (secrets masked); exit 2 when invalid.

    Runs the checks `run` makes before it connects (every key, the mapping rules, the
    librdkafka properties); makes no connection.

    \b
    Example:
      CONNECTOR_KAFKA__TOPICS=usage-events CONNECTOR_AMBERFLO__API_KEY=... \\
          amberflo-connector config check --config connector.yaml
    """
    from connector.formats import Mappers
    from connector.settings import load_settings

    settings = load_settings(config_file)
    Mappers(settings)  # builds every mapping's decoder: what `run` refuses, this refuses
    click.echo(settings.model_dump_json(indent=2))
