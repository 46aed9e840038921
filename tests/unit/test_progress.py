"""Lag from librdkafka statistics, the oldest unfinished record's age, the retention guard."""

from __future__ import annotations

import logging

import orjson
import pytest
from prometheus_client import REGISTRY

from connector.errors import ConfigError
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.progress import (
    FixedRetention,
    Progress,
    guard_level,
    human,
    lag_from_stats,
)
from connector.settings import Settings, load_settings

HOUR_MS = 3_600_000


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in list(__import__("os").environ):
        if key.startswith("CONNECTOR_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CONNECTOR_KAFKA__TOPICS", "usage")
    monkeypatch.setenv("CONNECTOR_AMBERFLO__API_KEY", "k")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_settings()


def _sample(name: str, topic: str | None = None, partition: int | None = None) -> float | None:
    labels = {} if topic is None else {"topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value(f"amberflo_connector_{name}", labels)


# A trimmed librdkafka statistics object as a consumer emits it (real field names).
STATS = {
    "name": "amberflo-connector#consumer-1",
    "type": "consumer",
    "topics": {
        "usage": {
            "topic": "usage",
            "partitions": {
                "0": {
                    "partition": 0,
                    "hi_offset": 500,
                    "committed_offset": 200,
                    "consumer_lag": 300,
                },
                "1": {
                    "partition": 1,
                    "hi_offset": 500,
                    "committed_offset": -1001,
                    "consumer_lag": -1,
                },
                "-1": {"partition": -1, "hi_offset": -1001, "consumer_lag": -1},
            },
        },
        "other": {"partitions": {"3": {"partition": 3, "consumer_lag": 0}}},
    },
}


def test_lag_from_stats_keeps_known_lags_of_real_partitions() -> None:
    assert lag_from_stats(STATS) == {("usage", 0): 300, ("other", 3): 0}
    assert lag_from_stats({}) == {}


def test_on_stats_sets_lag_of_assigned_partitions_only(monkeypatch: pytest.MonkeyPatch) -> None:
    cp = Checkpoint()
    cp.assign("usage", 0)
    progress = Progress(_settings(monkeypatch), lambda: cp.partitions, FixedRetention({}))
    progress.on_stats(orjson.dumps(STATS).decode())
    assert _sample("consumer_lag", "usage", 0) == 300
    assert _sample("consumer_lag", "other", 3) is None
    progress.on_stats("not json")  # ignored, nothing raised


def test_oldest_timestamp_comes_from_the_mark_at_or_below_the_lowest_pending() -> None:
    s = Checkpoint().assign("t", 0)
    assert s.oldest_timestamp_ms() is None
    s.mark(10, 1_000)  # first record of one poll: offsets 10..12
    for off in (10, 11, 12):
        s.track(off, 1)
    s.mark(13, 5_000)  # next poll: 13..14
    for off in (13, 14):
        s.track(off, 1)
    assert s.oldest_timestamp_ms() == 1_000
    s.done(10)
    s.done(11)
    assert s.oldest_timestamp_ms() == 1_000  # 12 still pending; its poll began at 1_000
    s.done(12)
    assert s.oldest_timestamp_ms() == 5_000
    assert s.marks == [(13, 5_000)], "marks below the lowest pending record are pruned"
    s.done(13)
    s.done(14)
    assert s.oldest_timestamp_ms() is None and s.marks == []


def test_guard_levels_and_human_durations() -> None:
    assert [guard_level(a, 100, 0.5, 0.8) for a in (0, 49, 50, 79, 80, 200)] == [0, 0, 1, 1, 2, 2]
    assert human(90_000) == "1.5 min" and human(36 * HOUR_MS) == "1.5 d" and human(500) == "0 s"


def test_tick_reports_age_retention_share_and_guard_level(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cp = Checkpoint()
    guarded, unguarded = cp.assign("usage", 0), cp.assign("infinite", 0)
    t0 = 1_800_000_000_000
    for state in (guarded, unguarded):
        state.mark(0, t0)
        state.track(0, 1)
    retention = FixedRetention({"usage": 10 * HOUR_MS, "infinite": None})
    progress = Progress(_settings(monkeypatch), lambda: cp.partitions, retention)
    caplog.set_level(logging.INFO, logger="connector.guard")

    progress.tick(now_ms=t0 + 2 * HOUR_MS)
    assert retention.asked == {"usage", "infinite"}
    assert _sample("oldest_unfinished_age_seconds", "usage", 0) == 7200
    assert _sample("oldest_unfinished_age_seconds", "infinite", 0) == 7200
    assert _sample("retention_used_ratio", "usage", 0) == pytest.approx(0.2)
    assert _sample("retention_used_ratio", "infinite", 0) is None
    assert _sample("retention_guard") == 0 and not caplog.records

    progress.tick(now_ms=t0 + 6 * HOUR_MS)
    assert _sample("retention_guard") == 1
    (warn,) = caplog.records
    assert warn.levelno == logging.WARNING
    assert "retention guard warn" in warn.message and "usage[0] is 6.0 h old, 60%" in warn.message

    progress.tick(now_ms=t0 + 9 * HOUR_MS)
    assert _sample("retention_guard") == 2
    assert caplog.records[-1].levelno == logging.ERROR
    assert "retention guard critical" in caplog.records[-1].message
    n = len(caplog.records)
    progress.tick(now_ms=t0 + 9 * HOUR_MS + 1000)
    assert len(caplog.records) == n, "no new line while the level stays (until the reminder)"

    guarded.done(0)  # delivered: nothing pending any more
    progress.tick(now_ms=t0 + 9 * HOUR_MS + 2000)
    assert _sample("oldest_unfinished_age_seconds", "usage", 0) == 0
    assert _sample("retention_guard") == 0
    assert "back to ok" in caplog.records[-1].message

    cp.revoke("usage", 0)
    progress.tick(now_ms=t0 + 9 * HOUR_MS + 3000)
    assert _sample("oldest_unfinished_age_seconds", "usage", 0) is None, "revoked: removed"
    assert _sample("retention_used_ratio", "usage", 0) is None


def test_guard_ratios_are_settings_with_critical_not_below_warn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = _settings(monkeypatch)
    assert (s.retention_guard.warn_ratio, s.retention_guard.critical_ratio) == (0.5, 0.8)
    with pytest.raises(ConfigError) as info:
        _settings(
            monkeypatch,
            CONNECTOR_RETENTION_GUARD__WARN_RATIO="0.9",
            CONNECTOR_RETENTION_GUARD__CRITICAL_RATIO="0.7",
        )
    assert str(info.value) == (
        "CONNECTOR_RETENTION_GUARD__CRITICAL_RATIO: must be ≥ warn_ratio (0.9) (got '0.7')"
    )
