"""Chaos scenario 5: 1% poison of every kind mixed with kill -9 during the drain: valid
totals exact, one dead letter per poison record (across the crashes), and a ``dlq replay``
after the operator fixed the mapping lands exactly the expected extra usage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest

from tests.chaos.flows import SLOW, kill_while_flowing
from tests.chaos.harness import Chaos, Row, scale
from tests.chaos.workload import Workload, fix_mapping

# Full sizes (make chaos) take minutes per scenario; pytest's default cap is 300 s.
pytestmark = pytest.mark.timeout(scale(300, 1200))


def test_s5_poison_with_kills_then_replay(chaos: Callable[..., Chaos], row: Row) -> None:
    """5. 1% poison of every kind with kill -9 during the drain; then replay after the fix."""
    n, kills = scale(20_000, 200_000), scale(2, 5)
    c = chaos()
    w = Workload(n, poison_every=100)
    poison = w.poison_keys()
    row.events = n
    c.api.fault(latency_ms=100, count=1_000_000, path="/ingest")
    c.start(**SLOW)
    kill_while_flowing(c, w, kills, lambda: c.start(**SLOW))
    c.api.clear_faults()
    c.wait_stored(w.valid, scale(60, 180))
    c.assert_exact(w.expected(), w.meters)

    letters = c.dead_letters(expect=len(poison))
    row.dead_letters = len(letters)
    keys = Counter(m.key() for m in letters)
    assert set(keys) == set(poison), "dead letters are exactly the poison records"
    twice = {k: v for k, v in keys.items() if v > 1}
    assert not twice, f"{len(twice)} poison records have more than one dead letter"
    stages = Counter(dict(m.headers() or [])["amberflo.error.stage"] for m in letters)
    shown = {  # what /metrics said while the poison went by (counters restart with a process)
        labels["stage"]
        for _t, _slot, got in c.sampler.samples
        for labels, v in got.get("amberflo_connector_dead_letters_total", [])
        if v > 0
    }
    assert shown == {"decode", "transform", "sink"}, f"dead_letters_total showed {shown}"
    row.notes.append(
        "dead letters by stage: "
        + ", ".join(f"{s.decode()} {k}" for s, k in sorted(stages.items()))
    )

    # The operator fixes the mapping, replays the dead letters, and the fixable ones count.
    code, _ = c.terminate()
    assert code == 0
    replay = subprocess.run(
        [sys.executable, "-m", "connector", "dlq", "replay", "--wait", "2"],
        env=c.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert f"republished {len(poison)} of {len(poison)}" in replay.stdout + replay.stderr
    c.start(CONNECTOR_MAPPINGS=json.dumps(fix_mapping(c.topic)))
    expected = Counter(w.expected())
    expected.update(w.fixed_extra())
    fixable = sum(1 for k in poison.values() if k != "bad-json")
    c.wait_stored(w.valid + fixable, 60, "the fixed records stored")
    c.assert_exact(dict(expected), w.meters)
    row.faults.append(f"{len(poison)} poison records ({', '.join(sorted(set(poison.values())))})")
    row.notes.append(f"replay after the fix landed {fixable} records, exactly the expected usage")
    unfixable = sum(1 for k in poison.values() if k == "bad-json")
    after = c.dead_letters(expect=len(poison) + unfixable)
    assert len(after) == len(poison) + unfixable, "only the bad JSON fails again, once each"
