"""``Repeats``: a failure repeated many times a second shows once per window, with a count."""

from __future__ import annotations

import logging

from connector.logs import Repeats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(
    msg: str, level: int = logging.ERROR, name: str = "connector.kafka.client"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def _fail(after_ms: int) -> logging.LogRecord:
    return _record(
        "FAIL [rdkafka#consumer-1] [thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect "
        f"to ipv4#127.0.0.1:1 failed: Connection refused (after {after_ms}ms in state CONNECT)"
    )


def test_a_repeated_failure_passes_once_per_window_and_then_says_how_many() -> None:
    clock = Clock()
    f = Repeats(window_s=60, clock=clock)
    passed = []
    for i in range(200):  # 20 a second for 10 s, with changing timings
        clock.now = i * 0.05
        r = _fail(i % 7)
        if f.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 1
    clock.now = 61.0
    r = _fail(3)
    assert f.filter(r)
    assert r.getMessage().endswith("(199 more like it in the last 61 s)")
    clock.now = 62.0
    assert not f.filter(_fail(1))


def test_different_failures_levels_and_loggers_are_each_shown() -> None:
    f = Repeats(window_s=60, clock=Clock())
    assert f.filter(_record("SASL authentication failed"))
    assert f.filter(_record("Connect to broker failed"))
    assert f.filter(_record("Connect to broker failed", logging.WARNING))
    assert f.filter(_record("Connect to broker failed", name="connector.source"))
    assert not f.filter(_record("Connect to broker failed"))


def test_debug_records_always_pass() -> None:
    f = Repeats(window_s=60, clock=Clock())
    assert all(f.filter(_record("fetch 1 of 2", logging.DEBUG)) for _ in range(5))


def test_the_kinds_remembered_are_bounded() -> None:
    f = Repeats(window_s=60, clock=Clock())
    for i in range(5000):
        f.filter(_record(f"failure {chr(65 + i % 26)}{'x' * (i // 26)}"))
    assert len(f._seen) <= 1000
