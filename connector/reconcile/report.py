"""The reconciliation report: its exit code, the text lines, the JSON document and the
Prometheus Pushgateway push."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from connector.reconcile.cells import CellResult
from connector.reconcile.model import Tally, Window, iso
from connector.reconcile.read import PartitionRead, RecordCounts

PUSH_JOB = "amberflo_connector_reconcile"
COLUMNS = (
    "meter",
    "customer",
    "bucket",
    "expected",
    "in Amberflo",
    "difference",
    "events",
    "cause",
)


def number(value: float) -> str:
    """``120``, ``-0.5``, ``1234567.25``: integers without a fraction, others as short as
    round-tripping allows."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass
class Report:
    window: Window
    tolerance: float
    slack_s: int
    topics: list[str]
    cells: list[CellResult]
    partitions: list[PartitionRead]
    counts: RecordCounts
    tally: Tally
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mismatched(self) -> list[CellResult]:
        return [c for c in self.cells if c.status == "mismatch"]

    @property
    def explained(self) -> list[CellResult]:
        return [c for c in self.cells if c.status == "explained"]

    @property
    def matching(self) -> int:
        return sum(c.status == "match" for c in self.cells)

    @property
    def ok(self) -> bool:
        """Every cell matches or is explained, and every record is accounted for."""
        return not self.mismatched and not self.counts.unaccounted

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def retention_cut(self) -> list[PartitionRead]:
        since = self.window.start_ms - self.slack_s * 1000
        return [p for p in self.partitions if p.retention_cut(since)]

    @property
    def records_per_s(self) -> float:
        """Records read and checked per second while reading (fixed costs left out)."""
        reading = self.counts.reading_s
        return self.counts.read / reading if reading > 0 else 0.0

    # -- text -----------------------------------------------------------------------------

    def lines(self) -> Iterator[str]:
        """One line per cell that is not a plain match (mismatches first), the notes, then
        the summary line."""
        rows = [
            (
                c.meter,
                c.customer,
                iso(c.bucket_s * 1000),
                number(c.kafka_sum),
                number(c.amberflo_sum),
                ("+" if c.difference > 0 else "") + number(c.difference),
                f"{c.kafka_count}/{c.amberflo_count}",
                c.cause,
            )
            for c in self.mismatched + self.explained
        ]
        if rows:
            widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
            for row in [COLUMNS, *rows]:
                yield "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        yield from self.warnings()
        yield self.summary()

    def warnings(self) -> Iterator[str]:
        counts = self.counts
        for example in counts.unaccounted_examples:
            yield (
                f"unaccounted: record {example} fails mapping, is committed and is not on the "
                "dead-letter topic"
            )
        more = counts.unaccounted - len(counts.unaccounted_examples)
        if more > 0:
            yield f"unaccounted: {more} more such records"
        from_start = sorted({p.topic for p in self.partitions if p.how == "beginning"})
        if from_start:
            yield (
                f"note: {', '.join(from_start)} read from the beginning (the broker ignores "
                "timestamp lookups)"
            )
        for p in self.retention_cut:
            yield (
                f"note: {p.topic}[{p.partition}] starts at offset {p.first_offset} "
                f"({iso(p.first_ts or 0)}): earlier records are gone (retention), usage before "
                "then cannot be checked"
            )
        if self.tally.collisions:
            ids = sorted(self.tally.collisions)
            shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
            yield (
                f"note: {len(ids)} uniqueId(s) are carried by events that differ (records "
                f"reusing one id): {shown}; Amberflo counts each distinct event"
            )
        if counts.letters_without_source:
            yield (
                f"note: {counts.letters_without_source} dead letter(s) carry no source "
                "coordinates and could not be matched to records"
            )
        for note in self.notes:
            yield f"note: {note}"

    def summary(self) -> str:
        counts = self.counts
        explained = self.explained
        causes = sorted({c.cause for c in explained})
        dead = sum(counts.dead_lettered.values())
        in_flight = sum(p.in_flight for p in self.partitions)
        verdict = "OK" if self.ok else "MISMATCH"
        return (
            f"reconcile {verdict}: {len(self.cells)} cells checked, {self.matching} matching, "
            f"{len(explained)} explained"
            + (f" ({', '.join(causes)})" if causes else "")
            + f", {len(self.mismatched)} mismatched; {self.tally.events} events checked from "
            f"{counts.read} records ({in_flight} in flight, {dead} dead-lettered, "
            f"{counts.filtered} filtered, {counts.unaccounted} unaccounted); covered "
            f"{iso(self.window.start_ms)} to {iso(self.window.end_ms)} by {self.window.interval}"
        )

    # -- JSON -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "window": {
                "from": iso(self.window.start_ms),
                "to": iso(self.window.end_ms),
                "interval": self.window.interval,
            },
            "tolerance": self.tolerance,
            "topics": self.topics,
            "summary": {
                "cells_checked": len(self.cells),
                "cells_matching": self.matching,
                "cells_explained": len(self.explained),
                "cells_mismatched": len(self.mismatched),
                "events_checked": self.tally.events,
                "duplicate_events": self.tally.duplicates,
                "events_outside": self.tally.outside,
                "events_filtered": self.tally.filtered_events,
                "records_read": counts.read,
                "records_in_flight": sum(p.in_flight for p in self.partitions),
                "records_dead_lettered": dict(counts.dead_lettered),
                "records_filtered": counts.filtered,
                "records_failing_in_flight": counts.failing_in_flight,
                "records_unaccounted": counts.unaccounted,
                "seconds": round(self.seconds, 3),
                "records_per_second": round(self.records_per_s, 1),
            },
            "cells": [
                {
                    "meterApiName": c.meter,
                    "customerId": c.customer,
                    "bucket": iso(c.bucket_s * 1000),
                    "status": c.status,
                    "cause": c.cause or None,
                    "expected": {"sum": c.kafka_sum, "count": c.kafka_count},
                    "committed": {"sum": c.committed_sum, "count": c.committed_count},
                    "amberflo": {"sum": c.amberflo_sum, "count": c.amberflo_count},
                    "filtered": {"sum": c.filtered_sum, "count": c.filtered_count},
                    "difference": c.difference,
                }
                for c in self.cells
                if c.status != "match"
            ],
            "unaccounted": counts.unaccounted_examples,
            "collisions": self.tally.collisions,
            "partitions": [p.to_json() for p in self.partitions],
            "retention_cut": [f"{p.topic}[{p.partition}]" for p in self.retention_cut],
            "notes": list(self.warnings()),
        }


def push(url: str, report: Report, group_id: str, now: float) -> None:
    """Push the outcome to a Prometheus Pushgateway (grouping: job, group).  POST semantics
    (``pushadd``): a failing run replaces the gauges it sets and leaves
    ``…_last_success_timestamp`` of the last good run in place."""
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    registry = CollectorRegistry()
    prefix = "amberflo_connector_reconcile_"
    gauges: list[tuple[str, str, float]] = [
        (
            "mismatched_cells",
            "Cells whose Amberflo usage differs from Kafka",
            len(report.mismatched),
        ),
        (
            "explained_cells",
            "Cells that differ only by in-flight or dead-lettered events",
            len(report.explained),
        ),
        ("checked_cells", "Cells checked by the last run", len(report.cells)),
        (
            "unaccounted_records",
            "Committed records neither delivered nor dead-lettered",
            report.counts.unaccounted,
        ),
        ("checked_events", "Events checked by the last run", report.tally.events),
        ("last_run_timestamp", "When the last run finished (epoch seconds)", now),
    ]
    if report.ok:
        gauges.append(
            (
                "last_success_timestamp",
                "When a run last found every cell matching (epoch seconds)",
                now,
            )
        )
    for name, text, value in gauges:
        Gauge(prefix + name, text, registry=registry).set(value)
    pushadd_to_gateway(
        url, job=PUSH_JOB, registry=registry, grouping_key={"group": group_id}, timeout=15
    )
