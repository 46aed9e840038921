"""The judgement of a cell: what Amberflo holds against what Kafka holds (``model``).  Pure.

A cell **matches** when Amberflo's SUM and COUNT equal everything Kafka holds for it (within
the tolerance), is **explained** when they lie between the committed part alone and the
committed part plus whatever in-flight and dead-lettered events there are (the cause names
which), and is a **mismatch** otherwise: ``missing`` when Amberflo holds less than the
committed part, ``extra`` when it holds more than Kafka does.

An ``extra`` cell whose filtered events account for the difference has the cause
``filtered``: Amberflo holds at least one event more than the committed part, and at most the
committed part plus the pending and the filtered events, in SUM and in COUNT.  That is usage
the current filters exclude and Amberflo holds anyway: the filters were changed after the
usage was ingested, or something that does not filter ingested it.  It stays a mismatch
(exit 1): Amberflo bills what the current rules say must not be billed, and someone has to
decide which of the two is right.  The cause is a likely cause, not a proof: the filtered
events are not matched one by one against what Amberflo holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from connector.reconcile.model import Cell, Pending

Status = Literal["match", "explained", "mismatch"]
FLOAT_SLACK = 1e-9
"""Relative difference below which two sums are equal (float rounding of long sums)."""


@dataclass(frozen=True, slots=True)
class CellResult:
    meter: str
    customer: str
    bucket_s: int
    kafka_sum: float
    kafka_count: int
    committed_sum: float
    committed_count: int
    amberflo_sum: float
    amberflo_count: int
    status: Status
    cause: str
    """'' for a match; in flight / dead-lettered (explained); missing / extra / filtered
    (mismatch)."""
    filtered_sum: float = 0.0
    filtered_count: int = 0
    """The cell's filtered events (never expected, so not part of ``kafka_*``)."""

    @property
    def difference(self) -> float:
        """Amberflo minus Kafka (SUM): negative when Amberflo holds less."""
        return self.amberflo_sum - self.kafka_sum


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance + FLOAT_SLACK * max(1.0, abs(a), abs(b))


def _slack(tolerance: float, lo: float, hi: float) -> float:
    return tolerance + FLOAT_SLACK * max(1.0, abs(lo), abs(hi))


def judge(
    committed: tuple[float, int],
    pending: Pending | None,
    amberflo: tuple[float, int],
    tolerance: float = 0.0,
    filtered: Pending | None = None,
) -> tuple[Status, str]:
    """The status and cause of one cell (module docstring); ``tolerance`` applies to both the
    SUM and the COUNT difference."""
    status, cause = _judge(committed, pending, amberflo, tolerance)
    if (
        status == "mismatch"
        and filtered is not None
        and filtered.count
        and _filtered(committed, pending, amberflo, tolerance, filtered)
    ):
        return status, "filtered"
    return status, cause


def _judge(
    committed: tuple[float, int],
    pending: Pending | None,
    amberflo: tuple[float, int],
    tolerance: float,
) -> tuple[Status, str]:
    c_sum, c_count = committed
    a_sum, a_count = amberflo
    pos = pending.pos if pending else 0.0
    neg = pending.neg if pending else 0.0
    p_count = pending.count if pending else 0
    if (
        _close(a_sum, c_sum + pos + neg, tolerance)
        and abs(a_count - (c_count + p_count)) <= tolerance
    ):
        return "match", ""
    lo, hi = c_sum + neg, c_sum + pos
    slack = _slack(tolerance, lo, hi)
    if a_sum < lo - slack:
        return "mismatch", "missing"
    if a_sum > hi + slack:
        return "mismatch", "extra"
    if a_count < c_count - tolerance:
        return "mismatch", "missing"
    if a_count > c_count + p_count + tolerance:
        return "mismatch", "extra"
    assert pending is not None  # in range but no match: there is something pending
    kinds = [k for k in ("in flight", "dead-lettered") if k in pending.kinds]
    return "explained", ", ".join(kinds)


def _filtered(
    committed: tuple[float, int],
    pending: Pending | None,
    amberflo: tuple[float, int],
    tolerance: float,
    filtered: Pending,
) -> bool:
    """Whether Amberflo's SUM and COUNT fit the committed part, some of the pending events
    and at least one of the filtered events."""
    c_sum, c_count = committed
    a_sum, a_count = amberflo
    p_pos = pending.pos if pending else 0.0
    p_neg = pending.neg if pending else 0.0
    p_count = pending.count if pending else 0
    lo, hi = c_sum + p_neg + filtered.neg, c_sum + p_pos + filtered.pos
    slack = _slack(tolerance, lo, hi)
    return (
        lo - slack <= a_sum <= hi + slack
        and c_count + 1 - tolerance <= a_count <= c_count + p_count + filtered.count + tolerance
    )


def compare(
    committed: Mapping[Cell, list[float]],
    pending: Mapping[Cell, Pending],
    amberflo: Mapping[Cell, list[float]],
    tolerance: float = 0.0,
    filtered: Mapping[Cell, Pending] | None = None,
) -> list[CellResult]:
    """Every cell Kafka expects or Amberflo holds, judged; sorted by meter, customer, bucket.
    A cell that holds filtered events only, and nothing in Amberflo, is not checked."""
    excluded = filtered or {}
    out: list[CellResult] = []
    for cell in sorted(set(committed) | set(pending) | set(amberflo)):
        c_sum, c_count = committed.get(cell, (0.0, 0))
        a_sum, a_count = amberflo.get(cell, (0.0, 0))
        p = pending.get(cell)
        f = excluded.get(cell)
        status, cause = judge((c_sum, int(c_count)), p, (a_sum, int(a_count)), tolerance, f)
        out.append(
            CellResult(
                meter=cell[0],
                customer=cell[1],
                bucket_s=cell[2],
                kafka_sum=c_sum + (p.pos + p.neg if p else 0.0),
                kafka_count=int(c_count) + (p.count if p else 0),
                committed_sum=c_sum,
                committed_count=int(c_count),
                amberflo_sum=a_sum,
                amberflo_count=int(a_count),
                status=status,
                cause=cause,
                filtered_sum=f.pos + f.neg if f else 0.0,
                filtered_count=f.count if f else 0,
            )
        )
    return out
