"""``amberflo-connector emulator``: the local Amberflo API."""

from __future__ import annotations

import click


@click.command()
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
