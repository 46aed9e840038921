"""docs/observability.md lists every metric the connector serves."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from connector import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def test_every_metric_is_in_the_observability_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = {
        m._name.removeprefix(metrics.P)
        for m in vars(metrics).values()
        if isinstance(m, Counter | Gauge | Histogram)
    }
    assert len(names) > 20
    missing = sorted(n for n in names if f"| `{n}" not in text)
    assert not missing, f"docs/observability.md does not list {missing}"
