"""``amberflo-connector reconcile``: prove that what Amberflo bills equals what Kafka holds.

The transform is deterministic, so the expected Amberflo totals can be recomputed from Kafka
at any time.  ``reconcile`` reads the source topics (``read``: no group join, no commit) from
the records whose timestamps precede the window by ``CONNECTOR_RECONCILE__SLACK_S``, runs every
record through the same mapping as ``run`` (``connector.formats.Mappers``), sums the events
whose time falls in the window per meter × customer × bucket, splits them into committed, in
flight and dead-lettered (``model``; the events a filter drops are kept per cell apart:
``filtered``), asks Amberflo's usage API for the same cells (``usage``), and judges every cell
(``cells.judge``).  ``report`` renders the outcome.

Modules: ``model`` (pure: windows, tally), ``cells`` (pure: judgement), ``read`` (Kafka),
``filtered`` (the events of filtered records), ``usage`` (Amberflo), ``report`` (text, JSON,
Pushgateway).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from connector.amberflo.client import AmberfloClient
from connector.errors import ConfigError
from connector.reconcile.cells import compare
from connector.reconcile.model import Tally, Window
from connector.reconcile.read import RecordCounts, dead_letter_coordinates, plan, read_source
from connector.reconcile.report import Report
from connector.reconcile.usage import amberflo_cells
from connector.settings import Settings

__all__ = ["Options", "Report", "Window", "reconcile"]


@dataclass(frozen=True)
class Options:
    window: Window
    topics: tuple[str, ...] = ()
    """Source topics (names or ``^regex``); empty: the configured ones."""
    meters: frozenset[str] | None = None
    """Only these meters (None: every meter the records map to)."""
    tolerance: float = 0.0
    idle_s: float = 2.0
    """Seconds without a new record after which the end of the topics is assumed."""


def reconcile(
    settings: Settings,
    options: Options,
    client: AmberfloClient,
    progress: Callable[[str, int], None] | None = None,
) -> Report:
    """Read Kafka, ask Amberflo, judge every cell.  Raises ``ConfigError`` when a topic is
    missing or the connector's group has committed nothing on any of them (a wrong group id
    would otherwise make everything look in flight), ``FatalError`` when Kafka or Amberflo
    cannot be read."""
    started = time.monotonic()
    window = options.window
    slack_s = settings.reconcile.slack_s
    say = progress or (lambda _phase, _n: None)
    say("looking up offsets", 0)
    topics, reads = plan(settings, list(options.topics), window.start_ms - slack_s * 1000)
    if reads and all(r.committed is None for r in reads):
        raise ConfigError(
            f"CONNECTOR_KAFKA__GROUP_ID: group {settings.kafka.group_id!r} has committed no "
            f"offset on {', '.join(topics)}; is it the connector's group?"
        )
    counts = RecordCounts()
    say("reading dead letters", 0)
    letters = dead_letter_coordinates(settings, topics, options.idle_s, counts)
    tally = Tally(window, options.meters)
    read_source(
        settings,
        reads,
        letters,
        tally,
        counts,
        options.idle_s,
        lambda n: say("reading records", n),
    )
    pending = tally.pending()
    filtered = tally.filtered()
    meters = options.meters or {c[0] for c in [*tally.committed, *pending, *filtered]}
    say("querying Amberflo", counts.read)
    amberflo, notes = amberflo_cells(client, meters, window)
    cells = compare(tally.committed, pending, amberflo, options.tolerance, filtered)
    return Report(
        window=window,
        tolerance=options.tolerance,
        slack_s=slack_s,
        topics=topics,
        cells=cells,
        partitions=reads,
        counts=counts,
        tally=tally,
        notes=notes,
        seconds=time.monotonic() - started,
    )
