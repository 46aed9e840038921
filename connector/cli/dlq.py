"""``amberflo-connector dlq``: inspect and replay dead letters."""

from __future__ import annotations

import click

from connector.cli.options import (
    CONFIG_OPTION,
    DLQ_TOPIC_OPTION,
    STAGE_OPTION,
    WAIT_OPTION,
    time_option,
)

PAGE_ROWS = 100
"""Dead letters per printed table page of ``dlq inspect`` (the most it holds at once)."""


@click.group(short_help="Inspect and replay the dead-letter topics.")
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
    counting them by stage and error class (on stderr with --json). Rows are printed as they
    are read, the table in pages of 100 rows, so a topic of any size streams through in
    bounded memory. Needs only the Kafka settings (no API key, no source topics with --topic).

    \b
    Example:
      amberflo-connector dlq inspect --topic usage-events.dlq --stage transform
    """
    import orjson
    from rich.console import Console

    from connector.dlq.inspect import FirstLetters, Summary, default_topics, letters_table
    from connector.dlq.inspect import read_dead_letters as read
    from connector.dlq.view import DeadLetterView
    from connector.settings import load_settings

    settings = load_settings(config_file, for_run=False, kafka_clients=True)
    names = list(topics) or default_topics(settings)
    err = Console(stderr=True)
    out = Console()
    if not out.is_terminal:  # piped: do not squeeze the table into 80 columns
        out = Console(width=200)
    summary = Summary()
    page: list[DeadLetterView] = []
    title: str | None = ", ".join(names)

    def show_page() -> None:
        nonlocal title
        if page:
            out.print(letters_table(page, title=title))
            out.file.flush()
            page.clear()
            title = None

    def missing(topic: str) -> None:
        err.print(f"{topic}: no such topic (no dead letters yet)")

    firsts = FirstLetters()
    for letter in read(settings, names, idle_s, missing):
        if stage is not None and letter.stage != stage:
            continue
        if not firsts.first(letter):
            continue
        summary.add(letter)
        if as_json:
            click.echo(orjson.dumps(letter.to_json()).decode())
        else:
            page.append(letter)
            if len(page) >= PAGE_ROWS:
                show_page()
        if limit is not None and summary.total >= limit:
            break
    line = summary.line() + (" (--limit reached)" if limit and summary.total >= limit else "")
    if firsts.duplicates:
        line += f"; {firsts.duplicates} more of the same records not shown (duplicates)"
    if as_json:
        click.echo(line, err=True)
        return
    show_page()
    click.echo(line)


@dlq.command("replay", short_help="Republish dead letters for another try.")
@CONFIG_OPTION
@DLQ_TOPIC_OPTION
@click.option("--to", "to", default=None, metavar="TOPIC", help="Republish here instead.")
@STAGE_OPTION
@time_option("--since", "Only dead letters that failed at or after TS.")
@time_option("--until", "Stop each partition at the first dead letter that failed after TS.")
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

    \b
    Example (after fixing what Amberflo refused):
      amberflo-connector dlq replay --stage sink --dry-run
      amberflo-connector dlq replay --stage sink
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from connector.dlq.inspect import default_topics
    from connector.dlq.replay import Replayer, ReplayReport
    from connector.settings import load_settings

    settings = load_settings(config_file, for_run=False, kafka_clients=True)
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
        disable=not err.is_terminal,  # piped: no bar to redraw, and no blank line left
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
