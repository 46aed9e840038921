"""The sink against a real HTTP server giving hostile answers (Retry-After it cannot honour)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connector import retry
from connector.pipeline.checkpoint import PartitionState
from connector.records import MeterEvent, SourceRecord
from connector.retry import RetryPolicy
from connector.settings import Settings
from connector.sinks.api import Sink
from connector.sinks.base import Item


class Throttler(ThreadingHTTPServer):
    """Answers the first ``throttle`` POSTs with 429 and ``retry_after``, then 200."""

    daemon_threads = True

    def __init__(self, retry_after: str, throttle: int = 1) -> None:
        self.retry_after = retry_after
        self.throttle = throttle
        self.posts: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(time.monotonic())
                if len(outer.posts) <= outer.throttle:
                    self.send_response(429)
                    self.send_header("Retry-After", outer.retry_after)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def throttler(request: pytest.FixtureRequest) -> Iterator[Throttler]:
    server = Throttler(request.param)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def items(n: int) -> list[Item]:
    state = PartitionState("t", 0)
    out = []
    for i in range(n):
        record = SourceRecord("t", 0, i, 1, None, b"{}")
        state.track(i, 1)
        out.append(Item(MeterEvent("c", "m", 1, 1, str(uuid.uuid4())), record, state))
    return out


@pytest.mark.parametrize(
    "throttler",
    ["1e20", "inf", "-5", "nan", "soon", "Fri, 31 Dec 9999 23:59:59 GMT", "99999999999999"],
    indirect=True,
)
def test_hostile_retry_after_is_capped_or_ignored(throttler: Throttler) -> None:
    settings = Settings(
        kafka={"topics": ["t"]},
        amberflo={"api_key": "k", "base_url": throttler.url},
        sink={"retry_initial_s": 0.05, "retry_max_s": 0.3},
    )
    sink = Sink(settings)
    started = time.monotonic()
    outcome = sink.deliver(items(3))
    assert len(outcome.delivered) == 3 and not outcome.rejected
    assert time.monotonic() - started < 5
    assert len(throttler.posts) == 2
    assert throttler.posts[1] - throttler.posts[0] <= 0.3 + 0.5  # the ceiling, not 1e20 s


def test_a_long_wait_keeps_saying_it_is_waiting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(retry, "STILL_WAITING_LOG_S", 0.05, raising=False)
    policy = RetryPolicy(0.1, 30, None, log=logging.getLogger("connector.sink"))
    with caplog.at_level(logging.WARNING, logger="connector.sink"):
        policy._sleep(0.5)
    waiting = [r for r in caplog.records if "still waiting to retry" in r.getMessage()]
    assert len(waiting) >= 4
    policy.abort.set()
    started = time.monotonic()
    policy._sleep(60)  # an abort ends any wait at once
    assert time.monotonic() - started < 1
