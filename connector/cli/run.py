"""``amberflo-connector run``: the connector itself."""

from __future__ import annotations

import sys

import click

from connector.cli.options import CONFIG_OPTION, configure_logging
from connector.errors import FatalError


@click.command()
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
    configure_logging(settings.log)
    if workers > 1:
        from connector.pipeline.supervisor import supervise

        sys.exit(supervise(config_file, workers, settings.metrics_port))
    from connector import metrics
    from connector.pipeline.worker import Worker

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
