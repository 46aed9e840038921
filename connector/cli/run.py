"""``amberflo-connector run``: the connector itself."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

import click

from connector.cli.options import CONFIG_OPTION, configure_logging
from connector.errors import FatalError

if TYPE_CHECKING:
    from connector.settings import Settings

log = logging.getLogger("connector.meters")


@click.command(short_help="Consume the topics and deliver usage to Amberflo.")
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

    \b
    Example:
      export CONNECTOR_KAFKA__BOOTSTRAP_SERVERS=kafka-1:9092
      export CONNECTOR_KAFKA__TOPICS=usage-events CONNECTOR_AMBERFLO__API_KEY=...
      export CONNECTOR_AMBERFLO__INGEST_URL=https://ingest.amberflo.io
      amberflo-connector run --workers 2
    """
    from connector.settings import load_settings

    settings = load_settings(config_file)
    configure_logging(settings.log)
    logging.getLogger("connector").debug("settings: %s", settings.model_dump_json())
    if settings.meters.sync_on_start:
        _sync_meters(settings)
        os.environ["CONNECTOR_METERS__SYNC_ON_START"] = "false"  # --workers: done once, here
    if workers > 1:
        from connector.pipeline.supervisor import supervise

        debug = bool((click.get_current_context().find_root().obj or {}).get("debug"))
        sys.exit(supervise(config_file, workers, settings.metrics_port, debug=debug))
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
    if not worker.run():  # stopped while starting: nothing to finish, nothing to commit
        logging.shutdown()
        os._exit(0)  # without waiting for Kafka clients stuck connecting to wind down


def _sync_meters(settings: Settings) -> None:
    """CONNECTOR_METERS__SYNC_ON_START: the ``meters sync`` of the config's definitions before
    anything is consumed, retried for at most CONNECTOR_KAFKA__STARTUP_TIMEOUT_S."""
    from connector.amberflo import AmberfloClient
    from connector.amberflo.meters import summary, sync

    if not settings.meters.definitions:
        log.warning("CONNECTOR_METERS__SYNC_ON_START is set but no meter is defined")
        return
    timeout = settings.kafka.startup_timeout_s
    with AmberfloClient.from_settings(settings, retry_timeout_s=timeout) as client:
        changes = sync(client, settings.meters.definitions, dry_run=False)
    for change in changes:
        log.info("%s", change.describe())
    log.info("meters sync: %s", summary(changes, dry_run=False))
