"""`amberflo-connector demo` end to end (what `make demo` runs), at a small size."""

import subprocess
import sys


def test_demo_checks_totals_and_exits_zero() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "connector", "demo", "--events", "3000", "--customers", "4"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "CHECK OK: all 12 meter×customer totals in Amberflo equal the totals produced" in out
    assert "dead-lettered: 5 (expected 5" in out
    assert "customer-03" in out and "Traceback" not in out
