"""``amberflo-connector emulator``: the local Amberflo API."""

from __future__ import annotations

import click

from connector.errors import FatalError


@click.command(short_help="Run the local Amberflo-compatible API (a sandbox).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
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
@click.option(
    "--s3-endpoint",
    metavar="URL",
    default=None,
    help="Also ingest the objects written to --s3-bucket on this S3(-compatible) endpoint, "
    "as Amberflo's S3 ingestion does (needs the [s3] extra).",
)
@click.option(
    "--s3-bucket",
    metavar="NAME",
    default=None,
    help="Bucket of the S3 intake (created if missing).",
)
@click.option(
    "--s3-poll",
    "s3_poll_s",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between two listings of the bucket.",
)
@click.option("--s3-region", default=None, help="Region of the S3 endpoint (default us-east-1).")
def emulator(
    host: str,
    port: int,
    db: str,
    api_keys: tuple[str, ...],
    s3_endpoint: str | None,
    s3_bucket: str | None,
    s3_poll_s: float,
    s3_region: str | None,
) -> None:
    """Run the local Amberflo-compatible API (a sandbox for tests and demos).

    \b
    Example, with an S3 intake polling a local S3 server (e.g. moto_server -p 5000):
      amberflo-connector emulator --port 8080 --s3-endpoint http://127.0.0.1:5000 \\
          --s3-bucket amberflo-ingest
    """
    try:
        from connector.emulator.server import S3Source, serve
    except ImportError as exc:  # the web stack is an extra: `run` and `dlq` do without it
        raise FatalError(
            f"the emulator needs its web stack ({exc.name or 'fastapi'} is missing): "
            "pip install 'amberflo-kafka-connector[emulator]'"
        ) from exc

    if (s3_endpoint is None) != (s3_bucket is None):
        raise click.UsageError("--s3-endpoint and --s3-bucket go together")
    s3 = None
    if s3_endpoint is not None and s3_bucket is not None:
        from connector.aws import s3_client

        s3_client(endpoint_url=s3_endpoint)  # boto3 missing: one line naming the extra, now
        s3 = S3Source(s3_endpoint, s3_bucket, s3_poll_s, s3_region)
    _check_can_serve(host, port, db)
    serve(host=host, port=port, db=db, api_keys=list(api_keys), s3=s3)


def _check_can_serve(host: str, port: int, db: str) -> None:
    """A taken port or a --db that cannot be opened: one line naming the option, before the
    server says it is listening (uvicorn would log its own error and exit 3; sqlite3 would
    end in a traceback)."""
    import socket
    import sqlite3

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise FatalError(
            f"cannot listen on {host}:{port} (--host/--port): {exc.strerror or exc}"
        ) from exc
    if db != ":memory:":
        try:
            sqlite3.connect(db).close()
        except sqlite3.Error as exc:
            raise FatalError(f"cannot open the database {db} (--db): {exc}") from exc
