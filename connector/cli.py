"""The ``amberflo-connector`` command.

Every command turns a ``ConnectorError`` into one line on stderr and its exit code; a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from connector import __version__
from connector.errors import ConnectorError, FatalError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="amberflo-connector")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Kafka → Amberflo usage-metering connector.

    Reads usage records from Kafka topics, turns each into Amberflo meter events with a
    deterministic uniqueId, delivers them to Amberflo's /ingest API and commits Kafka
    offsets only after delivery (or after the bad record is on the dead-letter topic).

    Configuration comes from CONNECTOR_* environment variables and/or a YAML file
    (--config); see docs/configuration.md.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--db",
    default="./amberflo-emulator.db",
    show_default=True,
    help="SQLite file holding everything accepted (':memory:' for none).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    default=["local-dev-key"],
    show_default=True,
    help="Accepted X-API-KEY value (repeatable).",
)
def emulator(host: str, port: int, db: str, api_keys: tuple[str, ...]) -> None:
    """Run the local Amberflo-compatible API (a sandbox for tests and demos)."""
    from connector.emulator.server import serve

    serve(host=host, port=port, db=db, api_keys=list(api_keys))


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML config file (also CONNECTOR_CONFIG_FILE); environment variables override it.",
)


@cli.command()
@CONFIG_OPTION
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Consumer processes in the same group (one per core). Worker i serves metrics on "
    "CONNECTOR_METRICS_PORT + i.",
)
def run(config_file: str | None, workers: int) -> None:
    """Consume the configured topics and deliver usage to Amberflo until SIGTERM/SIGINT.

    Offsets are committed only for records whose events Amberflo accepted (or whose dead
    letter the DLQ acknowledged). The first SIGTERM/SIGINT finishes in-flight work within
    CONNECTOR_SHUTDOWN_TIMEOUT_S, commits and exits 0; a second one exits at once.
    """
    from connector.settings import load_settings

    settings = load_settings(config_file)
    _configure_logging(settings.log_level, settings.log_format)
    if workers > 1:
        from connector.supervisor import supervise

        sys.exit(supervise(config_file, workers, settings.metrics_port))
    from connector import metrics
    from connector.worker import Worker

    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port)
        except OSError as exc:
            raise FatalError(
                f"cannot serve metrics on port {settings.metrics_port} "
                f"(CONNECTOR_METRICS_PORT): {exc.strerror}"
            ) from exc
    worker = Worker(settings)
    worker.install_signal_handlers()
    worker.run()


@cli.command()
@click.option(
    "--events",
    default=100_000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Sample usage records to produce.",
)
@click.option(
    "--customers",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Customers the sample usage is spread over.",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the broker, emulator and connector up afterwards and print addresses.",
)
def demo(events: int, customers: int, keep_running: bool) -> None:
    """Run everything locally: embedded Kafka + Amberflo emulator + sample data + connector.

    Prints a usage table per meter and customer from the emulator's /usage API, the number of
    dead letters, and a check that the totals in Amberflo equal the totals produced. Exits 0
    when they match, 1 when not.
    """
    from rich.console import Console

    from connector.demo import run_demo

    sys.exit(run_demo(events, customers, keep_running, Console()))


@cli.group()
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
    from connector.settings import load_settings

    settings = load_settings(config_file)
    click.echo(settings.model_dump_json(indent=2))


def _configure_logging(level: str, fmt: str) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    if fmt == "json":
        from connector.logs import JsonFormatter

        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    for noisy in ("urllib3", "tenacity"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConnectorError as exc:
        if debug:
            raise
        code = exc.exit_code if isinstance(exc, FatalError) else 1
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"amberflo-connector: {line}", err=True)
        sys.exit(code)
    except KeyboardInterrupt:
        sys.exit(130)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
