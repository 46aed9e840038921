"""Emulator ingest throughput: one client posting gzip'd 1,000-event batches to ``/ingest``.

    python -m benchmarks.emulator_ingest                 # starts its own emulator
    python -m benchmarks.emulator_ingest --url URL --api-key KEY --events 500000

Bodies are built and gzip'd before the clock starts, so the figure is what the emulator
sustains (HTTP + gunzip + parse + validate + dedupe + SQLite commit), not what the client
can generate.  Every event is distinct, so every record is stored.
"""

from __future__ import annotations

import argparse
import gzip
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import orjson
import requests


def make_bodies(events: int, batch: int, run_id: str) -> list[bytes]:
    """gzip'd JSON arrays of ``batch`` events (the last one may be shorter)."""
    t0 = 1_700_000_000_000
    bodies = []
    for start in range(0, events, batch):
        chunk = [
            {
                "customerId": f"bench-customer-{i % 50}",
                "meterApiName": "bench-api-calls",
                "meterValue": 1 + i % 7,
                "meterTimeInMillis": t0 + i,
                "uniqueId": f"{run_id}-{i}",
                "dimensions": {"region": "eu-west-1", "plan": f"p{i % 3}"},
            }
            for i in range(start, min(start + batch, events))
        ]
        bodies.append(gzip.compress(orjson.dumps(chunk), compresslevel=5))
    return bodies


def run(
    base_url: str,
    api_key: str,
    events: int = 200_000,
    batch: int = 1000,
    concurrency: int = 1,
) -> float:
    """Post ``events`` events in ``batch``-sized gzip requests; returns accepted events/s.

    ``concurrency`` > 1 keeps that many requests in flight (one session per thread), like
    the connector's ``sink.max_in_flight``; the default is one request at a time.
    """
    bodies = make_bodies(events, batch, uuid.uuid4().hex[:12])
    headers = {
        "X-API-KEY": api_key,
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    url = base_url.rstrip("/") + "/ingest"

    def post_all(share: list[bytes]) -> int:
        accepted = 0
        with requests.Session() as session:
            for body in share:
                response = session.post(url, data=body, headers=headers, timeout=60)
                response.raise_for_status()
                accepted += int(response.text.split(" ", 1)[0])
        return accepted

    post_all(bodies[:1])  # warm-up (connection, first-request costs); not timed
    rest = bodies[1:]
    started = time.perf_counter()
    if concurrency <= 1:
        accepted = post_all(rest)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            shares = [rest[i::concurrency] for i in range(concurrency)]
            accepted = sum(pool.map(post_all, shares))
    return accepted / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running emulator (default: start one)")
    parser.add_argument("--api-key", default="local-dev-key")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    args = parser.parse_args()
    if args.url:
        rate = run(args.url, args.api_key, args.events, args.batch, args.concurrency)
    else:
        from connector.embedded import EmbeddedEmulator

        with EmbeddedEmulator(api_key=args.api_key) as emulator:
            rate = run(emulator.base_url, args.api_key, args.events, args.batch, args.concurrency)
    print(
        f"emulator ingest: {rate:,.0f} events/s ({args.events:,} events, batch {args.batch}, "
        f"{args.concurrency} in flight)"
    )


if __name__ == "__main__":
    main()
