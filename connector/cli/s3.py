"""``amberflo-connector s3``: the S3 delivery mode's tools (``s3 failures``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from connector.cli.options import CONFIG_OPTION, configure_logging


@click.group(short_help="Tools of the S3 delivery mode (failure reports).")
def s3() -> None:
    """Tools of the S3 delivery mode (CONNECTOR_SINK__MODE=s3; see docs/s3.md)."""


@s3.command("failures", short_help="List Amberflo's failure reports about our objects.")
@CONFIG_OPTION
@click.option(
    "--all", "show_all", is_flag=True, help="Also reports about objects of other prefixes."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def s3_failures(config_file: str | None, show_all: bool, as_json: bool) -> None:
    """List Amberflo's failure reports (failed-requests/…reason.txt) about the objects the
    connector wrote under CONNECTOR_S3__PREFIX, oldest first: when, the object (topic,
    partition, offsets), whether its records were dead-lettered (the report is tagged
    amberflo-connector=dead-lettered once they were), and the reason.

    \b
    Example:
      CONNECTOR_S3__BUCKET=my-amberflo-bucket amberflo-connector s3 failures
    """
    import orjson
    from rich.console import Console
    from rich.table import Table

    from connector.aws import s3_client
    from connector.errors import ConfigError
    from connector.settings import load_settings
    from connector.sinks.s3_failures import is_tagged, list_reports, read_reason

    settings = load_settings(config_file, for_run=False)
    configure_logging(settings.log)  # botocore's INFO lines are not this command's output
    cfg = settings.s3
    if not cfg.bucket:
        raise ConfigError("CONNECTOR_S3__BUCKET: is required")
    s3 = s3_client(region=cfg.region, endpoint_url=cfg.endpoint_url)
    rows = []
    with _one_line_errors(cfg.bucket):
        found = sorted(
            (r for r in list_reports(s3, cfg.bucket, cfg.prefix) if show_all or r.range),
            key=lambda r: (r.modified, r.key),
        )
        for r in found:
            where = (
                f"{r.range.topic}[{r.range.partition}] {r.range.first}-{r.range.last}"
                if r.range
                else "-"
            )
            rows.append(
                {
                    "report": r.key,
                    "object": r.object_key,
                    "records": where,
                    "reported_at": r.modified.isoformat(timespec="seconds"),
                    "dead_lettered": is_tagged(s3, cfg.bucket, r.key),
                    "reason": read_reason(s3, cfg.bucket, r.key),
                }
            )
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        return
    if rows:
        table = Table(title=f"failure reports in s3://{cfg.bucket}/failed-requests/")
        for column in ("reported at", "records", "dead-lettered", "reason", "object"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(
                str(row["reported_at"]),
                str(row["records"]),
                "yes" if row["dead_lettered"] else "no",
                str(row["reason"])[:200],
                str(row["object"]),
            )
        out = Console()
        if not out.is_terminal:
            out = Console(width=200)
        out.print(table)
    scope = "in the bucket" if show_all else f"about objects under {cfg.prefix}/"
    click.echo(f"{len(rows)} failure report(s) {scope}")


@contextmanager
def _one_line_errors(bucket: str) -> Iterator[None]:
    """botocore's failures as the one-line errors the S3 sink stops with (a missing bucket,
    denied access, no credentials, an unreachable endpoint), not a traceback."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    from connector.errors import FatalError
    from connector.sinks.s3 import classify

    try:
        yield
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        raise classify(dict(exc.response.get("Error") or {}), status, bucket) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise FatalError(
            f"no AWS credentials for s3://{bucket}: {exc} (set AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a service-account role for IRSA)"
        ) from exc
    except BotoCoreError as exc:  # connection refused, timeouts, a malformed endpoint, …
        raise FatalError(
            f"cannot reach S3 for s3://{bucket}: {exc} (CONNECTOR_S3__ENDPOINT_URL, "
            "CONNECTOR_S3__REGION)"
        ) from exc
