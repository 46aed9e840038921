"""The command line (``amberflo-connector``): one module per command group."""

from connector.cli.main import cli, main

__all__ = ["cli", "main"]
