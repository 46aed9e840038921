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


def run(base_url: str, api_key: str, events: int = 200_000, batch: int = 1000) -> float:
    """Post ``events`` events in ``batch``-sized gzip requests; returns accepted events/s."""
    bodies = make_bodies(events, batch, uuid.uuid4().hex[:12])
    headers = {
        "X-API-KEY": api_key,
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    url = base_url.rstrip("/") + "/ingest"
    with requests.Session() as session:
        session.post(url, data=bodies[0], headers=headers, timeout=30).raise_for_status()
        accepted = 0
        started = time.perf_counter()
        for body in bodies[1:]:
            response = session.post(url, data=body, headers=headers, timeout=30)
            response.raise_for_status()
            accepted += int(response.text.split(" ", 1)[0])
        elapsed = time.perf_counter() - started
    return accepted / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running emulator (default: start one)")
    parser.add_argument("--api-key", default="local-dev-key")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if args.url:
        rate = run(args.url, args.api_key, args.events, args.batch)
    else:
        from connector.embedded import EmbeddedEmulator

        with EmbeddedEmulator(api_key=args.api_key) as emulator:
            rate = run(emulator.base_url, args.api_key, args.events, args.batch)
    print(f"emulator ingest: {rate:,.0f} events/s ({args.events:,} events, batch {args.batch})")


if __name__ == "__main__":
    main()
