"""``amberflo-connector config``: the configuration reference and a validator."""

from __future__ import annotations

import click

from connector.cli.options import CONFIG_OPTION


@click.group()
def config() -> None:
    """Inspect and validate configuration."""


@config.command("reference")
def config_reference() -> None:
    """Print the configuration reference (every key, default and rule) as Markdown."""
    from connector.settings import reference_markdown

    click.echo(reference_markdown(), nl=False)


@config.command("check")
@CONFIG_OPTION
def config_check(config_file: str | None) -> None:
    """Validate the configuration and print it (secrets masked); exit 2 when invalid."""
    from connector.formats import Mappers
    from connector.settings import load_settings

    settings = load_settings(config_file)
    Mappers(settings)  # builds every mapping's decoder: what `run` refuses, this refuses
    click.echo(settings.model_dump_json(indent=2))
