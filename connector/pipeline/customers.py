"""Customer updates (Segment ``identify``, ``kind: customer`` mappings) applied in Amberflo,
in record order per customer, under the same contract as ingest.

Contract
--------
* **Order per customer.**  Every update of a customer goes to the same serial lane (lanes are
  chosen by a hash of the customerId; ``CONNECTOR_SINK__MAX_IN_FLIGHT`` lanes run side by
  side), and a lane applies its updates one at a time in the order the worker read them, so an
  identify that renames a customer is never overtaken by an older one from the same
  partition.
* **What an update does.**  ``PUT /customers`` with replace semantics, then, when the update
  names a plan, ``ensure_plan`` as of the record's time: the plan is assigned unless it is the
  one in effect at that time.  Both are safe to repeat, so a replay after a crash (or a retry
  whose answer was lost) changes nothing.
* **Retries.**  429, 5xx, timeouts and refused connections are retried with the sink's
  backoff (``RetryPolicy``), the whole update at a time, while the lane waits (later updates of
  its customers wait behind it; ``backing_off`` pauses consumption like a stuck ingest).
* **Dead letters.**  A 400 is Amberflo refusing this very update: the record is
  dead-lettered with Amberflo's reason (``CustomerRejected``, stage ``sink``).  A 401/403 or
  another 4xx stops the connector (``FatalError``).
* **Commits.**  The worker tracks the record in its checkpoint when it submits the update and
  marks it done when the lane reports success (or the dead letter is acknowledged), so the
  offset is committed only after Amberflo applied it.
* **Revoke and shutdown.**  An update of a partition no longer owned is not started (nor
  retried): the new owner reads the record again.  A shutdown (``abort``) abandons waits.

Each lane reports to the worker's completion queue; only the worker's main thread touches the
checkpoint and the dead-letter publisher.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from collections.abc import Callable
from typing import NamedTuple

from connector import metrics
from connector.amberflo import AmberfloApiError, AmberfloClient, Customer, PlanAssignment
from connector.errors import Abandoned, CustomerRejected
from connector.pipeline.checkpoint import PartitionState
from connector.records import CustomerUpdate, SourceRecord
from connector.retry import RetryPolicy
from connector.settings import Settings

log = logging.getLogger("connector.customers")


class CustomerDone(NamedTuple):
    """A lane's report: the update of ``record`` is applied (``error`` None), refused
    (``CustomerRejected``), or failed beyond retrying (any other exception)."""

    record: SourceRecord
    state: PartitionState
    error: BaseException | None = None


_Job = tuple[CustomerUpdate, SourceRecord, PartitionState] | None


class CustomerSync:
    """The lanes (threads start at once); ``report`` receives every ``CustomerDone``."""

    def __init__(
        self,
        settings: Settings,
        abort: threading.Event,
        report: Callable[[CustomerDone], None],
    ) -> None:
        self._settings = settings
        self._report = report
        self.retry = RetryPolicy.from_settings(
            settings.sink,
            abort=abort,
            log=log,
            name="customer update",
            stuck_hint="; the customer's later updates wait behind it, nothing past it is "
            "committed",
        )
        lanes = settings.sink.max_in_flight
        self._lanes: list[queue.SimpleQueue[_Job]] = [queue.SimpleQueue() for _ in range(lanes)]
        self._threads = [
            threading.Thread(target=self._run, args=(lane,), name=f"customers-{i}", daemon=True)
            for i, lane in enumerate(self._lanes)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def backing_off(self) -> int:
        return self.retry.backing_off

    def submit(self, update: CustomerUpdate, record: SourceRecord, state: PartitionState) -> None:
        """Queue ``update`` on its customer's lane (after that customer's earlier updates)."""
        lane = zlib.crc32(update.customer_id.encode()) % len(self._lanes)
        self._lanes[lane].put((update, record, state))

    def stop(self) -> None:
        """Let each lane finish what it is doing and exit (queued updates are dropped)."""
        for lane in self._lanes:
            lane.put(None)

    def _run(self, lane: queue.SimpleQueue[_Job]) -> None:
        amberflo = self._settings.amberflo
        client = AmberfloClient(
            amberflo.base_url,
            amberflo.api_key.get_secret_value(),
            timeout=self._settings.sink.request_timeout_s,
        )
        with client:
            while True:
                job = lane.get()
                if job is None or self.retry.abort.is_set():
                    return
                update, record, state = job
                if not state.active:
                    continue  # revoked: the partition's new owner applies it
                try:
                    self.retry.call(_apply, client, update, state)
                except Abandoned:
                    continue
                except BaseException as exc:  # reported; the worker decides
                    self._report(CustomerDone(record, state, exc))
                    continue
                self._report(CustomerDone(record, state))


def _apply(client: AmberfloClient, update: CustomerUpdate, state: PartitionState) -> None:
    """One attempt at the whole update (repeated by the retry policy)."""
    if not state.active:
        raise Abandoned("partition revoked")
    customer = Customer(
        customer_id=update.customer_id,
        customer_name=update.name,
        customer_email=update.email,
        traits=dict(update.traits),
    )
    try:
        client.upsert_customer(customer)
        metrics.CUSTOMER_UPDATES.labels("upserted").inc()
        if update.plan is not None:
            wanted = PlanAssignment(
                customer_id=update.customer_id,
                product_plan_id=update.plan,
                start_time_in_seconds=update.time_s,
            )
            _, assigned = client.ensure_plan(wanted)
            metrics.CUSTOMER_UPDATES.labels("plan_assigned" if assigned else "plan_unchanged").inc()
    except AmberfloApiError as exc:
        if exc.status != 400:
            raise
        metrics.CUSTOMER_UPDATES.labels("rejected").inc()
        raise CustomerRejected(str(exc), http_status=400) from exc
