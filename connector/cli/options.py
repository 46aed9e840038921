"""Options and helpers shared by the command modules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from connector.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from connector.amberflo import AmberfloClient
    from connector.settings import LogSettings, Settings

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
SAMPLE_FORMATS = ("native", "json", "avro", "cloudevents")
"""The formats the sample producer writes (and the demo runs on)."""
CUSTOMERS_OPTION = click.option(
    "--customers",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Customers the sample usage is spread over.",
)


def sample_format_option(text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--format`` (stored as ``fmt``) over SAMPLE_FORMATS, default native."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(SAMPLE_FORMATS),
        default="native",
        show_default=True,
        help=text,
    )


WAIT_OPTION = click.option(
    "--wait",
    "idle_s",
    type=click.FloatRange(0.1, 600),
    default=2.0,
    show_default=True,
    help="Seconds without a new record after which the end of a topic is assumed.",
)


def time_option(
    name: str, text: str, dest: str | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
        from connector.timefmt import parse_time

        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise click.BadParameter("give epoch milliseconds or an ISO-8601 time") from exc

    decls = (name, dest) if dest else (name,)
    return click.option(*decls, default=None, metavar="TS", callback=parse, help=text)


def configure_logging(log: LogSettings) -> None:
    """Root level and format from ``log``; then each logger named in ``log.levels``.
    ``--debug`` (on the command group) sets the root level to DEBUG whatever ``log.level``."""
    ctx = click.get_current_context(silent=True)
    debug = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("debug"))
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else log.level)
    if log.format == "json":
        from connector.logs import JsonFormatter

        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    for noisy in ("urllib3", "tenacity", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, level in log.levels.items():
        logging.getLogger(name).setLevel(level)


COMMAND_RETRY_TIMEOUT_S = 30.0
"""How long the Amberflo commands retry when CONNECTOR_SINK__RETRY_TIMEOUT_S is unset."""

API_EXIT_CODES = """\b
Exit codes: 0 done; 1 Amberflo refused the request (bad API key, bad request) or stayed
unreachable; 2 bad configuration or options; 3 not found (where a command says so).
Transient failures (429, 5xx, timeouts, refused connections) are retried with the sink's
backoff (CONNECTOR_SINK__RETRY_*) for up to CONNECTOR_SINK__RETRY_TIMEOUT_S, 30 s when unset."""


def api_settings(config_file: str | None) -> Settings:
    """Settings for the commands that only talk to Amberflo (meters, customers, usage): no
    Kafka key is required, the API key is."""
    from connector.settings import load_settings

    settings = load_settings(config_file, for_run=False)
    if not settings.amberflo.api_key.get_secret_value():
        raise ConfigError("CONNECTOR_AMBERFLO__API_KEY: is required")
    configure_logging(settings.log)
    return settings


def api_client(settings: Settings) -> AmberfloClient:
    """The typed client with the sink's backoff, bounded for a command someone waits on."""
    from connector.amberflo import AmberfloClient

    timeout = settings.sink.retry_timeout_s or COMMAND_RETRY_TIMEOUT_S
    return AmberfloClient.from_settings(settings, retry_timeout_s=timeout)


def print_table(table: Table) -> None:
    """``table`` on stdout: fitted to the terminal there, whole when stdout is a pipe or a
    file (rich would otherwise squeeze it into 80 columns and cut every cell)."""
    from rich.console import Console

    out = Console()
    if not out.is_terminal:
        whole = Console(width=100_000).measure(table).maximum
        out = Console(width=max(80, whole))
    out.print(table)


def print_json(doc: Any) -> None:
    import orjson

    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
