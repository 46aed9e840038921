"""`amberflo-connector demo` end to end (what `make demo` runs), at a small size: native, and
Avro through the local Schema Registry (the other formats run the same code path)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("fmt", "bad"), [("native", 5), ("avro", 3)])
def test_demo_checks_totals_and_exits_zero(fmt: str, bad: int) -> None:
    args = ["demo", "--events", "3000", "--customers", "4", "--format", fmt]
    res = subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "CHECK OK: all 12 meter×customer totals in Amberflo equal the totals produced" in out
    assert f"dead-lettered: {bad} (expected {bad}" in out
    assert "customer-03" in out and "Traceback" not in out


def test_demo_through_s3_checks_totals_and_exits_zero() -> None:
    """`demo --sink s3`: connector → moto's S3 server → the emulator's S3 intake."""
    res = subprocess.run(
        [
            *(sys.executable, "-m", "connector", "demo"),
            *("--sink", "s3", "--events", "3000", "--customers", "4"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "objects written to s3://amberflo-ingest" in out
    assert "CHECK OK: all 12 meter×customer totals in Amberflo equal the totals produced" in out
    assert "dead-lettered: 5 (expected 5" in out and "Traceback" not in out
