"""``amberflo-connector schema-registry``: a local Schema Registry for trying Avro."""

from __future__ import annotations

import threading

import click


@click.command("schema-registry", short_help="Run a small local Schema Registry, in memory.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8081, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
def schema_registry(host: str, port: int) -> None:
    """Run a small Confluent-compatible Schema Registry, in memory, until Ctrl-C.

    For trying the avro format on a laptop: the producer registers its schema here and the
    connector fetches it by id.  No compatibility checks, no auth, nothing kept on disk; run
    Confluent's Schema Registry for anything else (docker-compose.yml has one).

    \b
    Example:
      amberflo-connector schema-registry --port 8081 &
      amberflo-connector produce --topic usage-avro --events 1000 --format avro \\
          --schema-registry http://127.0.0.1:8081
    """
    from connector.errors import FatalError
    from connector.local_registry import LocalSchemaRegistry

    registry = LocalSchemaRegistry(port or None, host)
    try:
        registry.start()
    except OSError as exc:
        raise FatalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    with registry:
        click.echo(f"Schema Registry listening on {registry.url} (in memory; Ctrl-C stops it)")
        threading.Event().wait()
