"""Options and helpers shared by the command modules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from connector.settings import LogSettings

CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML config file (also CONNECTOR_CONFIG_FILE); environment variables override it.",
)


DLQ_TOPIC_OPTION = click.option(
    "--topic",
    "topics",
    multiple=True,
    help="Dead-letter topic (repeatable). Default: the DLQ topic of each configured source topic.",
)
STAGE_OPTION = click.option(
    "--stage",
    type=click.Choice(["decode", "transform", "sink"]),
    default=None,
    help="Only dead letters of this stage.",
)
WAIT_OPTION = click.option(
    "--wait",
    "idle_s",
    type=click.FloatRange(0.1, 600),
    default=2.0,
    show_default=True,
    help="Seconds without a new record after which the end of a topic is assumed.",
)


def time_option(name: str, text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
        from connector.dlq.inspect import parse_time

        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise click.BadParameter("give epoch milliseconds or an ISO-8601 time") from exc

    return click.option(name, default=None, metavar="TS", callback=parse, help=text)


def configure_logging(log: LogSettings) -> None:
    """Root level and format from ``log``; then each logger named in ``log.levels``."""
    root = logging.getLogger()
    root.setLevel(log.level)
    if log.format == "json":
        from connector.logs import JsonFormatter

        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    for noisy in ("urllib3", "tenacity"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, level in log.levels.items():
        logging.getLogger(name).setLevel(level)
