"""``amberflo-connector mappings``: see what the mapping rules make of records before deploying."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from connector.cli.options import CONFIG_OPTION, WAIT_OPTION

if TYPE_CHECKING:
    from connector.formats.preview import Outcome
    from connector.settings import Settings

_PLACEHOLDERS: dict[str, dict[str, Any]] = {
    "CONNECTOR_KAFKA__TOPICS: is required": {"kafka": {"topics": ["-"]}},
    "CONNECTOR_AMBERFLO__API_KEY: is required": {"amberflo": {"api_key": "-"}},
}


def _settings(config_file: str | None) -> Settings:
    """The settings, without requiring what these commands never use (the API key; for
    ``test``, the topics): those are filled with placeholders when absent."""
    from connector.errors import ConfigError
    from connector.settings import load_settings

    try:
        return load_settings(config_file)
    except ConfigError as exc:
        lines = str(exc).splitlines()
        if not lines or any(line not in _PLACEHOLDERS for line in lines):
            raise
        fill: dict[str, Any] = {}
        for line in lines:
            fill.update(_PLACEHOLDERS[line])
        return load_settings(config_file, **fill)


@click.group(short_help="Try the mapping rules on real or written records.")
def mappings() -> None:
    """Try the mapping rules (the `mappings` section, docs/mappings.md) on real or written
    records, and see the events each becomes or the error it would be dead-lettered with."""


@mappings.command("preview")
@CONFIG_OPTION
@click.option("--topic", default=None, help="Topic to read (default: every configured topic).")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=10,
    show_default=True,
    help="Records to read per topic, from its beginning.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@WAIT_OPTION
def mappings_preview(
    config_file: str | None, topic: str | None, limit: int, as_json: bool, idle_s: float
) -> None:
    """Read records and print the events each would become.

    Reads up to --limit records of each topic from its beginning (no group join, no commit:
    the connector's offsets are untouched), maps them with the configured rules and prints
    the events, the filter that drops a record, or the error it would be dead-lettered with.
    Nothing is sent to Amberflo.

    \b
    Examples:
      amberflo-connector mappings preview --config connector.yaml
      amberflo-connector mappings preview --config connector.yaml --topic usage.api \\
          --limit 3 --json
    """
    import orjson

    from connector.formats import Mappers
    from connector.formats.preview import outcome, preview_topics, read_records
    from connector.kafka import topic_ids

    settings = _settings(config_file)
    mappers = Mappers(settings, topic_ids(settings))  # the uniqueIds `run` would derive
    available: list[str] = []
    if not topic and any(t.startswith("^") for t in settings.kafka.topics):
        available = _topic_names(settings)
    topics = preview_topics(settings, topic, available)
    results: list[Outcome] = []
    for item in read_records(settings, topics, limit, idle_s):
        if isinstance(item, str):
            click.echo(f"{item}: no such topic", err=True)
            continue
        result = outcome(mappers, item)
        if as_json:
            click.echo(orjson.dumps(result.to_json()).decode())
        results.append(result)
    if not as_json:
        _print_table(results, ", ".join(topics))
    click.echo(_summary(results), err=as_json)


def _topic_names(settings: Settings) -> list[str]:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from connector.errors import FatalError
    from connector.kafka import client_config

    try:
        meta = AdminClient(client_config(settings)).list_topics(timeout=10)
    except KafkaException as exc:
        raise FatalError(
            f"cannot list topics at {settings.kafka.bootstrap_servers}: {exc}"
        ) from exc
    return sorted(meta.topics)


def _summary(results: list[Outcome]) -> str:
    events = sum(len(r.events) for r in results)
    filtered = sum(1 for r in results if r.filtered is not None)
    failed = sum(1 for r in results if r.stage is not None)
    customers = sum(1 for r in results if r.customer is not None)
    return (
        f"{len(results)} record(s): {events} event(s), "
        + (f"{customers} customer update(s), " if customers else "")
        + f"{filtered} filtered, {failed} would be dead-lettered"
    )


def _print_table(results: list[Outcome], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from connector.timefmt import ms_to_iso

    table = Table(title=title)
    for name in ("source", "customer", "meter", "value", "time (UTC)", "uniqueId", "dimensions"):
        table.add_column(name, overflow="fold")
    for r in results:
        if r.stage is not None:
            table.add_row(r.source, f"[red]DLQ {r.stage}: {r.error_class}: {r.message}[/red]")
            continue
        if r.filtered is not None:
            table.add_row(r.source, f"[dim]filtered by {r.filtered}[/dim]")
            continue
        if r.customer is not None:
            table.add_row(r.source, str(r.customer["customerId"]), f"customer update: {r.customer}")
            continue
        if not r.events:
            table.add_row(r.source, "[dim](no events)[/dim]")
        for n, e in enumerate(r.events):
            dims = e.get("dimensions") or {}
            table.add_row(
                r.source if n == 0 else "",
                str(e["customerId"]),
                str(e["meterApiName"]),
                str(e["meterValue"]),
                ms_to_iso(int(e["meterTimeInMillis"]), zulu=True),
                str(e["uniqueId"]),
                ", ".join(f"{k}={v}" for k, v in dims.items()),
            )
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    out.print(table)


@mappings.command("test", short_help="Run a file of expected cases through the rules.")
@CONFIG_OPTION
@click.argument("cases_file", type=click.Path(exists=True, dir_okay=False))
def mappings_test(config_file: str | None, cases_file: str) -> None:
    """Run a file of {record, expect} cases through the mapping rules; exit 1 on a failure.

    For your own CI: each case gives a record (topic, value as JSON or value_text /
    value_base64, headers, key, timestamp, partition, offset) and what it must become:
    `events` (each listed key must match; leave out uniqueId to not check it), `error`
    (stage, class, message substring) or `filtered` (the filter's label, or true).
    Only the `mappings` section and the topics are read from the config; no connection is
    made.

    \b
    Example cases file (YAML):
      - name: an API call
        record: {topic: usage.api, value: {tenant: {id: acme}, usage: {requests: 3}}}
        expect:
          events: [{customerId: acme, meterApiName: api_calls, meterValue: 3}]
      - name: no tenant
        record: {topic: usage.api, value: {usage: {requests: 3}}}
        expect: {error: {stage: transform, message: customer_id}}
    \b
      amberflo-connector mappings test --config connector.yaml mapping-cases.yaml
    """
    from pathlib import Path

    from connector.formats import Mappers
    from connector.formats.preview import check, load_cases, outcome

    settings = _settings(config_file)
    mappers = Mappers(settings)
    cases = load_cases(Path(cases_file), settings)
    failed = 0
    for case in cases:
        problems = check(case, outcome(mappers, case.record))
        if problems:
            failed += 1
            click.echo(f"FAIL {case.name}")
            for p in problems:
                click.echo(f"     {p}")
        else:
            click.echo(f"ok   {case.name}")
    click.echo(f"{len(cases) - failed} passed, {failed} failed")
    if failed:
        raise SystemExit(1)
