"""pipeline/customers.CustomerSync without a server: what a lane does with an update of a
revoked partition, with one that keeps failing, and on shutdown."""

from __future__ import annotations

import queue
import threading

from connector.embedded import free_port
from connector.errors import FatalError
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.customers import CustomerDone, CustomerSync
from connector.records import CustomerUpdate, SourceRecord
from connector.settings import Settings


def lanes(
    abort: threading.Event, timeout_s: float | None = 0.3
) -> tuple[CustomerSync, queue.SimpleQueue[CustomerDone]]:
    settings = Settings(
        kafka={"topics": ["t"]},
        amberflo={"api_key": "k", "base_url": f"http://127.0.0.1:{free_port()}"},  # nobody
        sink={"retry_initial_s": 0.01, "retry_max_s": 0.02, "retry_timeout_s": timeout_s},
    )
    reports: queue.SimpleQueue[CustomerDone] = queue.SimpleQueue()
    return CustomerSync(settings, abort, reports.put), reports


UPDATE = CustomerUpdate("acme", "Acme", None, {}, None, 1)


def test_an_update_of_a_revoked_partition_is_never_attempted() -> None:
    sync, reports = lanes(threading.Event())
    checkpoint = Checkpoint()
    revoked, owned = checkpoint.assign("t", 0), checkpoint.assign("t", 1)
    checkpoint.revoke("t", 0)
    sync.submit(UPDATE, SourceRecord("t", 0, 5, 1, None, b""), revoked)
    sync.submit(UPDATE, SourceRecord("t", 1, 6, 1, None, b""), owned)  # same customer: after it
    done = reports.get(timeout=10)  # the owned one, failing for good (nothing listens)
    assert done.record.partition == 1 and isinstance(done.error, FatalError)
    assert "customer update kept failing" in str(done.error)
    assert reports.empty()  # the revoked one was skipped, not reported
    sync.stop()


def test_shutdown_abandons_a_retrying_update_without_a_report() -> None:
    abort = threading.Event()
    sync, reports = lanes(abort, timeout_s=None)  # retries forever
    state = Checkpoint().assign("t", 0)
    sync.submit(UPDATE, SourceRecord("t", 0, 1, 1, None, b""), state)
    threading.Timer(0.3, abort.set).start()
    sync.stop()
    for thread in sync._threads:
        thread.join(5)
        assert not thread.is_alive()
    assert reports.empty() and sync.backing_off == 0
