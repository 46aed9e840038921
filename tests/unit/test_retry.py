"""connector.retry.RetryPolicy: the backoff the sink and the API client share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from connector import metrics
from connector.errors import Abandoned, FatalError, RetryableError, ThrottledError
from connector.retry import RetryPolicy
from connector.settings import SinkSettings


def flaky(failures: list[Exception]) -> tuple[list[float], Callable[[], str]]:
    """A callable that raises ``failures`` in turn, then returns "ok"; and its call times."""
    calls: list[float] = []

    def fn() -> str:
        calls.append(time.monotonic())
        if failures:
            raise failures.pop(0)
        return "ok"

    return calls, fn


def test_retries_retryable_errors_until_success() -> None:
    calls, fn = flaky([RetryableError("500"), RetryableError("timeout")])
    retries = metrics.RETRIES._value.get()
    assert RetryPolicy(0.001, 0.002, None).call(fn) == "ok"
    assert len(calls) == 3
    assert metrics.RETRIES._value.get() - retries == 2


def test_other_errors_are_not_retried() -> None:
    calls, fn = flaky([FatalError("401")])
    with pytest.raises(FatalError, match="401"):
        RetryPolicy(0.001, 0.002, None).call(fn)
    assert len(calls) == 1


def test_throttling_waits_at_least_retry_after_up_to_the_ceiling() -> None:
    calls, fn = flaky([ThrottledError("429", http_status=429, retry_after=0.3)])
    RetryPolicy(0.001, 1.0, None).call(fn)
    assert calls[1] - calls[0] >= 0.3
    calls, fn = flaky([ThrottledError("429", http_status=429, retry_after=1e20)])
    RetryPolicy(0.001, 0.05, None).call(fn)  # capped at max_s, not an OverflowError
    assert calls[1] - calls[0] < 1


def test_gives_up_after_the_timeout_naming_the_setting() -> None:
    policy = RetryPolicy(0.01, 0.02, 0.1, name="ingest")
    _, fn = flaky([RetryableError("HTTP 503")] * 1000)
    with pytest.raises(FatalError, match=r"^ingest kept failing for 0s \(CONNECTOR_SINK__RETRY"):
        policy.call(fn)


def test_abort_ends_a_wait_at_once_as_abandoned() -> None:
    policy = RetryPolicy(30, 30, None)
    _, fn = flaky([RetryableError("HTTP 503")] * 10)
    threading.Timer(0.2, policy.abort.set).start()
    started = time.monotonic()
    with pytest.raises(Abandoned):
        policy.call(fn)
    assert time.monotonic() - started < 5
    assert policy.backing_off == 0


def test_backing_off_counts_waiting_calls() -> None:
    policy = RetryPolicy(0.5, 0.5, None)
    _, fn = flaky([RetryableError("HTTP 503")])
    seen: list[int] = []
    watcher = threading.Timer(0.1, lambda: seen.append(policy.backing_off))
    watcher.start()
    policy.call(fn)
    watcher.join()
    assert seen == [1] and policy.backing_off == 0


def test_from_settings_uses_the_sink_backoff() -> None:
    sink = SinkSettings(retry_initial_s=2, retry_max_s=9, retry_timeout_s=40)
    policy = RetryPolicy.from_settings(sink)
    assert policy.timeout_s == 40
    assert RetryPolicy.from_settings(sink, timeout_s=5).timeout_s == 5
