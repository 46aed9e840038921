"""The ``amberflo-connector`` command.

Every command turns a ``ConnectorError`` into one line on stderr and its exit code; a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
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


def _time_option(name: str, text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
        from connector.dlq_tools import parse_time

        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise click.BadParameter("give epoch milliseconds or an ISO-8601 time") from exc

    return click.option(name, default=None, metavar="TS", callback=parse, help=text)


@cli.group()
def dlq() -> None:
    """Inspect and replay the dead-letter topics (see docs/dlq.md)."""


@dlq.command("inspect")
@CONFIG_OPTION
@DLQ_TOPIC_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
@STAGE_OPTION
@click.option("--json", "as_json", is_flag=True, help="JSON lines with the full record.")
@WAIT_OPTION
def dlq_inspect(
    config_file: str | None,
    topics: tuple[str, ...],
    limit: int | None,
    stage: str | None,
    as_json: bool,
    idle_s: float,
) -> None:
    """Show dead letters without consuming them.

    Reads from the beginning with a throwaway consumer (assign(), no group join, no commit)
    and prints a table — or, with --json, one JSON object per line holding the full record
    and headers (bytes as UTF-8 text, or base64 with a *_base64 flag) — then a summary line
    counting them by stage and error class (on stderr with --json).
    """
    import orjson
    from rich.console import Console

    from connector.dlq_tools import DeadLetterView, Summary, default_topics, letters_table
    from connector.dlq_tools import read_dead_letters as read
    from connector.settings import load_settings

    settings = load_settings(config_file)
    names = list(topics) or default_topics(settings)
    err = Console(stderr=True)
    summary = Summary()
    shown: list[DeadLetterView] = []

    def missing(topic: str) -> None:
        err.print(f"{topic}: no such topic (no dead letters yet)")

    for letter in read(settings, names, idle_s, missing):
        if stage is not None and letter.stage != stage:
            continue
        summary.add(letter)
        if as_json:
            click.echo(orjson.dumps(letter.to_json()).decode())
        else:
            shown.append(letter)
        if limit is not None and summary.total >= limit:
            break
    line = summary.line() + (" (--limit reached)" if limit and summary.total >= limit else "")
    if as_json:
        click.echo(line, err=True)
        return
    if shown:
        out = Console()
        if not out.is_terminal:  # piped: do not squeeze the table into 80 columns
            out = Console(width=200)
        out.print(letters_table(shown, title=", ".join(names)))
    click.echo(line)


@dlq.command("replay")
@CONFIG_OPTION
@DLQ_TOPIC_OPTION
@click.option("--to", "to", default=None, metavar="TOPIC", help="Republish here instead.")
@STAGE_OPTION
@_time_option("--since", "Only dead letters that failed at or after TS.")
@_time_option("--until", "Stop each partition at the first dead letter that failed after TS.")
@click.option("--dry-run", is_flag=True, help="Count what would be republished; change nothing.")
@click.option(
    "--group", default=None, help="Progress consumer group (default: <group_id>.dlq-replay)."
)
@WAIT_OPTION
def dlq_replay(
    config_file: str | None,
    topics: tuple[str, ...],
    to: str | None,
    stage: str | None,
    since: int | None,
    until: int | None,
    dry_run: bool,
    group: str | None,
    idle_s: float,
) -> None:
    """Republish dead letters to their source topic (or --to) for another try.

    Each goes out with its original key, value, timestamp and headers, minus the error
    headers, plus amberflo.origin (the coordinates of its first publication, from which the
    connector derives the same uniqueIds as the first time) and amberflo.replay.count + 1.
    Progress is committed in its own consumer group after every window is acknowledged, so
    an interrupted replay resumes and never republishes a record twice. Dead letters not
    selected by --stage/--since are passed over for that group. Times (TS) are epoch
    milliseconds or ISO-8601 (UTC unless a zone is given).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from connector.dlq_replay import Replayer, ReplayReport
    from connector.dlq_tools import default_topics
    from connector.settings import load_settings

    settings = load_settings(config_file)
    names = list(topics) or default_topics(settings)
    err = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("replaying" if not dry_run else "dry run", total=None, status="")

        def show(report: ReplayReport) -> None:
            n = sum(report.republished.values())
            progress.update(task, status=f"{report.read} read, {n} selected")

        replayer = Replayer(
            settings,
            to=to,
            stage=stage,
            since_ms=since,
            until_ms=until,
            dry_run=dry_run,
            group=group,
            idle_s=idle_s,
            progress=show,
        )
        replayer.run(names, lambda t: err.print(f"{t}: no such topic (no dead letters yet)"))
    click.echo(replayer.report.line())


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
