"""`amberflo-connector dlq inspect` and `dlq replay` against the real broker and emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from connector.dlq.publish import error_headers
from connector.dlq.replay import Replayer
from connector.errors import FatalError
from connector.formats.ids import UniqueIds
from connector.kafka import TopicIds
from connector.records import DeadLetter, SourceRecord
from connector.settings import Settings
from tests.conftest import Emulator
from tests.integration.failure_harness import (
    QUICK_GROUP,
    header,
    headers_of,
    produce_raw,
    read_topic,
    wait_for_records,
)
from tests.integration.harness import (
    ConnectorProcess,
    Emu,
    committed,
    connector_env,
    expected_totals,
    wait_until,
)

T0 = 1_767_225_600_000
API_KEY_ENV = "CONNECTOR_AMBERFLO__API_KEY"
TOO_LATE = 10**15


@pytest.fixture
def env_for(kafka_broker: str, amberflo_emulator: Emulator) -> Callable[..., dict[str, str]]:
    def make(topic: str, group: str, **extra: str) -> dict[str, str]:
        extra.setdefault("CONNECTOR_KAFKA__CONSUMER", QUICK_GROUP)
        return connector_env(
            kafka_broker,
            topic,
            amberflo_emulator.base_url,
            amberflo_emulator.api_key,
            group,
            **extra,
        )

    return make


@pytest.fixture
def start(
    env_for: Callable[..., dict[str, str]],
    connectors: Callable[..., ConnectorProcess],
    emu: Emu,
) -> Iterator[Callable[..., ConnectorProcess]]:
    def _start(topic: str, group: str, **extra: str) -> ConnectorProcess:
        return connectors(env_for(topic, group, **extra))

    yield _start
    emu.clear_faults()


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "dlq", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def name() -> str:
    return uuid.uuid4().hex[:8]


def event(m: str, i: int, **over: object) -> dict[str, object]:
    return {
        "customerId": f"c{i % 3}",
        "meterApiName": m,
        "meterValue": i + 1,
        "meterTimeInMillis": T0 + i,
        **over,
    }


def settings(bootstrap: str, topic: str, group: str) -> Settings:
    return Settings(
        kafka={"bootstrap_servers": bootstrap, "topics": [topic], "group_id": group},
        amberflo={"api_key": "k"},
    )


def craft(bootstrap: str, dlq: str, letters: list[tuple[DeadLetter, str, int, int]]) -> None:
    """Write dead letters exactly as the connector would: (letter, style, failed_at, partition)."""
    records = []
    for letter, style, now_ms, partition in letters:
        r = letter.record
        records.append(
            {
                "key": r.key,
                "value": r.value,
                "timestamp": r.timestamp_ms,
                "partition": partition,
                "headers": list(r.headers) + list(error_headers(letter, style, "grp", now_ms)),
            }
        )
    produce_raw(bootstrap, dlq, records)


def test_inspect_table_json_stage_and_limit_without_touching_any_group(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
    env_for: Callable[..., dict[str, str]],
) -> None:
    topic, m = topic_factory(1), f"m-{name()}"
    produce_raw(
        kafka_broker,
        topic,
        [
            {"value": b"\xff\x00binary", "key": b"k0", "headers": [("trace", b"t0")]},
            {"value": orjson.dumps({"meterApiName": m}), "key": b"k1"},
            {"value": orjson.dumps(event(m, 0, meterTimeInMillis=TOO_LATE)), "key": b"k2"},
            {"value": orjson.dumps(event(m, 1)), "key": b"k3"},
        ],
    )
    group = f"g-{m}"
    proc = start(topic, group)
    wait_for_records(kafka_broker, f"{topic}.dlq", 3)
    wait_until(lambda: committed(kafka_broker, group, topic, 1)[0] == 4, 30, "all committed")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    env = env_for(topic, group)

    table = cli(env, "inspect", "--wait", "0.5")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[-1] == (
        "3 dead letters — decode 1 (DecodeError 1); transform 1 (MappingError 1);"
        " sink 1 (EventRejected 1)"
    )
    body = table.stdout
    for expected in (
        f"{topic}/0@0",
        f"{topic}/0@1",
        f"{topic}/0@2",
        "DecodeError: not valid JSON",
        "MappingError: customerId: must be a non-empty string",
        " 400 ",
        "base64:/wBiaW5hcnk=",
    ):
        assert expected in body, expected

    js = cli(env, "inspect", "--json", "--wait", "0.5")
    assert js.returncode == 0, js.stderr
    docs = [orjson.loads(line) for line in js.stdout.splitlines()]
    assert [d["source"]["offset"] for d in docs] == [0, 1, 2]
    assert js.stderr.strip().startswith("3 dead letters — ")
    first = docs[0]
    assert first["value"] == "/wBiaW5hcnk=" and first["value_base64"] is True
    assert first["key"] == "k0" and first["key_base64"] is False
    assert first["headers"][0] == {"key": "trace", "value": "t0", "base64": False}
    assert [h["key"] for h in first["headers"][1:4]] == [
        "amberflo.error.stage",
        "amberflo.error.class",
        "amberflo.error.message",
    ]
    assert (first["stage"], first["error_class"]) == ("decode", "DecodeError")
    topic_id = str(TopicIds(settings(kafka_broker, topic, "g"))(topic))
    assert first["origin"] == f"{topic_id}/0/0"  # name@topic id: what its uniqueIds came from
    assert docs[2]["http_status"] == 400 and "meterTimeInMillis" in docs[2]["error_message"]

    sink_only = cli(env, "inspect", "--json", "--stage", "sink", "--wait", "0.5")
    assert [orjson.loads(x)["stage"] for x in sink_only.stdout.splitlines()] == ["sink"]
    limited = cli(env, "inspect", "--limit", "2", "--wait", "0.5")
    assert limited.stdout.splitlines()[-1] == (
        "2 dead letters — decode 1 (DecodeError 1); transform 1 (MappingError 1) (--limit reached)"
    )
    # nothing was committed for the connector's group on the DLQ, nor moved on the source
    assert committed(kafka_broker, group, f"{topic}.dlq", 1)[0] < 0
    assert committed(kafka_broker, group, topic, 1)[0] == 4
    # the dlq tools need neither the Amberflo key nor the source topics
    bare = {k: v for k, v in env.items() if k not in (API_KEY_ENV, "CONNECTOR_KAFKA__TOPICS")}
    plain = cli(bare, "inspect", "--topic", f"{topic}.dlq", "--wait", "0.5")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[-1] == lines[-1]
    missing = cli(env, "inspect", "--topic", f"nope-{name()}", "--wait", "0.5")
    assert missing.returncode == 0 and "no such topic" in missing.stderr
    assert missing.stdout.strip() == "0 dead letters"


def test_replay_after_the_fix_brings_totals_exact_with_the_original_unique_ids(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
    env_for: Callable[..., dict[str, str]],
) -> None:
    """Amberflo rejects three events (a 400 fault), they are dead-lettered; once the cause is
    fixed, a replay delivers them and the totals are exact — under the uniqueIds derived from
    their original coordinates. A second replay republishes nothing."""
    topic, m = topic_factory(2), f"m-{name()}"
    group = f"g-{m}"
    records = [event(m, i) for i in range(20)]
    proc = start(
        topic,
        group,
        CONNECTOR_SINK__BATCH_SIZE="1",
        CONNECTOR_SINK__MAX_IN_FLIGHT="1",
        CONNECTOR_KAFKA__COMMIT_INTERVAL_MS="100",
    )
    wait_until(lambda: "assigned" in proc.output(), 30, "partitions assigned")
    emu.fault(status=400, count=3, path="/ingest")
    produce_raw(
        kafka_broker,
        topic,
        [{"value": orjson.dumps(r), "key": str(i).encode()} for i, r in enumerate(records)],
    )
    dead = wait_for_records(kafka_broker, f"{topic}.dlq", 3)
    wait_until(lambda: emu.count(m) == 17, 30, "17 stored")
    assert len(dead) == 3
    assert {header(d, "amberflo.error.http_status") for d in dead} == {"400"}
    origins = {
        (
            header(d, "amberflo.source.topic"),
            int(header(d, "amberflo.source.partition") or 0),
            int(header(d, "amberflo.source.offset") or 0),
        )
        for d in dead
    }

    env = env_for(topic, group)
    res = cli(env, "replay", "--wait", "0.5")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"republished 3 of 3 dead letters read ({topic} 3); 0 not selected"
    wait_until(lambda: emu.count(m) == 20, 30, "all 20 stored")
    wait_until(
        lambda: sum(committed(kafka_broker, group, topic, 2).values()) == 23,
        15,
        "the replayed records committed",
    )
    time.sleep(0.5)
    assert emu.count(m) == 20
    assert emu.totals(m) == pytest.approx(expected_totals(records))

    # the replayed events carry the uniqueIds of their original coordinates
    cfg = settings(kafka_broker, topic, group)
    ids, key = UniqueIds(cfg.unique_id_namespace), TopicIds(cfg)(topic)  # key: name@topic id
    assert key.startswith(f"{topic}@")  # Tansu reports topic ids
    stored = emu.s.get(
        f"{emu.base_url}/_emulator/records", params={"meterApiName": m}, timeout=10
    ).json()["records"]
    all_coords = {(topic, p, o) for p in range(2) for o in range(20)}
    want = {ids.at(f"{key}/{p}/{o}", m) for _t, p, o in all_coords}
    assert {r["uniqueId"] for r in stored} <= want and len(stored) == 20
    assert {ids.at(f"{key}/{p}/{o}", m) for _t, p, o in origins} <= {r["uniqueId"] for r in stored}

    again = cli(env, "replay", "--wait", "0.5")
    assert again.returncode == 0 and again.stdout.startswith("republished 0 of 0 dead letters")
    assert len(read_topic(kafka_broker, f"{topic}.dlq", idle=1)) == 3
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def dead_letters(
    n: int, source: str, dlq_partitions: int
) -> list[tuple[DeadLetter, str, int, int]]:
    out = []
    for i in range(n):
        rec = SourceRecord(
            source,
            i % 4,
            i // 4,
            T0 + i,
            f"k{i}".encode(),
            orjson.dumps({"i": i}),
            (("n", str(i).encode()),),
        )
        out.append(
            (
                DeadLetter(rec, "sink", "EventRejected", "HTTP 400", 400),
                "amberflo",
                T0 + 10_000 + i,
                i % dlq_partitions,
            )
        )
    return out


def by_origin(msgs: list[Any]) -> Counter[str]:
    return Counter(header(m, "amberflo.origin") or "" for m in msgs)


def replay_progress(bootstrap: str, group: str, dlq: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(dlq, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def test_replay_killed_mid_way_and_restarted_republishes_nothing_twice(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    env_for: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    source, target = topic_factory(4), topic_factory(4)
    dlq = topic_factory(2, prefix="dlq")
    n = 6000
    craft(kafka_broker, dlq, dead_letters(n, source, 2))
    group = f"g-{name()}"
    env = env_for(source, group)
    log = open(tmp_path / "replay.log", "wb")  # noqa: SIM115
    args = [
        sys.executable,
        "-m",
        "connector",
        "dlq",
        "replay",
        "--topic",
        dlq,
        "--to",
        target,
        "--wait",
        "0.5",
    ]
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    progress = f"{group}.dlq-replay"
    try:
        wait_until(
            lambda: replay_progress(kafka_broker, progress, dlq, 2) > 0,
            60,
            "a first window committed",
            interval=0.02,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        log.close()
    done_at_kill = replay_progress(kafka_broker, progress, dlq, 2)
    assert 0 < done_at_kill < n
    res = subprocess.run(args, env=env, text=True, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert replay_progress(kafka_broker, progress, dlq, 2) == n
    out = read_topic(kafka_broker, target, expect=n)
    counts = by_origin(out)
    assert len(out) == n and len(counts) == n and set(counts.values()) == {1}
    assert "republished" in res.stdout


class CrashBeforeCommit(Replayer):
    """Dies between the broker's acknowledgement of a window and the commit of its progress."""

    def _commit(self, topic: str, passed: dict[int, int]) -> None:
        raise FatalError("simulated crash")


def test_an_interrupted_window_is_recognised_and_not_republished(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    source, target = topic_factory(4), topic_factory(4)
    dlq = topic_factory(1, prefix="dlq")
    craft(kafka_broker, dlq, dead_letters(600, source, 1))
    s = settings(kafka_broker, source, f"g-{name()}")
    with pytest.raises(FatalError, match="simulated crash"):
        CrashBeforeCommit(s, to=target, idle_s=0.5).run([dlq])
    assert len(read_topic(kafka_broker, target, expect=500)) == 500  # the window did land
    second = Replayer(s, to=target, idle_s=0.5)
    second.run([dlq])
    assert second.report.already == 500
    assert sum(second.report.republished.values()) == 100
    out = read_topic(kafka_broker, target, expect=600)
    assert len(out) == 600 and set(by_origin(out).values()) == {1}
    third = Replayer(s, to=target, idle_s=0.5)
    third.run([dlq])
    assert third.report.read == 0 and len(read_topic(kafka_broker, target, idle=1)) == 600


def test_replay_headers_routing_filters_and_dry_run(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    env_for: Callable[..., dict[str, str]],
) -> None:
    a, b, other = topic_factory(4), topic_factory(2), topic_factory(3)
    dlq = topic_factory(1, prefix="dlq")
    hdrs = (("trace", b"x"), ("trace", b"y"), ("nil", None))
    rec_a = SourceRecord(a, 3, 11, T0, b"ka", b"\x00raw", hdrs)
    rec_b = SourceRecord(b, 1, 5, T0 + 1, None, b'{"meterApiName":"m"}', ())
    twice = SourceRecord(
        a,
        0,
        40,
        T0 + 2,
        b"kt",
        b"{}",
        (
            ("amberflo.origin", b"first/2/9"),
            ("amberflo.replay.count", b"1"),
            ("amberflo.replay.source", b"old.dlq/0/3"),
        ),
    )
    rec_d = SourceRecord(a, 2, 7, T0 + 3, b"kd", b"{}", ())
    craft(
        kafka_broker,
        dlq,
        [
            (DeadLetter(rec_a, "decode", "DecodeError", "bad"), "amberflo", T0 + 1000, 0),
            (
                DeadLetter(rec_b, "transform", "MappingError", "customerId: x"),
                "connect",
                T0 + 2000,
                0,
            ),
            (DeadLetter(twice, "sink", "EventRejected", "HTTP 400", 400), "amberflo", T0 + 3000, 0),
            (DeadLetter(rec_d, "sink", "EventRejected", "HTTP 400", 400), "amberflo", T0 + 4000, 0),
        ],
    )
    group = f"g-{name()}"
    env = env_for(a, group)

    dry = cli(env, "replay", "--topic", dlq, "--dry-run", "--wait", "0.5")
    assert dry.returncode == 0, dry.stderr
    assert dry.stderr == ""  # piped: no progress display, not even the blank line it leaves
    targets = ", ".join(f"{t} {n}" for t, n in sorted({a: 3, b: 1}.items()))
    assert (
        dry.stdout.strip()
        == f"would republish 4 of 4 dead letters read ({targets}); 0 not selected"
    )
    assert (
        read_topic(kafka_broker, a, idle=0.5) == [] and read_topic(kafka_broker, b, idle=0.5) == []
    )
    assert replay_progress(kafka_broker, f"{group}.dlq-replay", dlq, 1) == 0

    # --until holds the partition at the first later failure; a later run continues from there
    s = settings(kafka_broker, a, group)
    r1 = Replayer(s, to=other, until_ms=T0 + 2500, group="until", idle_s=0.5)
    r1.run([dlq])
    assert (sum(r1.report.republished.values()), r1.report.held) == (2, 1)
    r2 = Replayer(s, to=other, group="until", idle_s=0.5)
    r2.run([dlq])
    assert sum(r2.report.republished.values()) == 2 and r2.report.read == 2
    # --since and --stage select; the rest is passed over for that group
    r3 = Replayer(s, to=other, since_ms=T0 + 2500, stage="sink", group="since", idle_s=0.5)
    r3.run([dlq])
    assert (sum(r3.report.republished.values()), r3.report.skipped) == (2, 2)

    # routed by each style's source-topic header, to the original partition
    res = cli(env, "replay", "--topic", dlq, "--wait", "0.5")
    assert res.returncode == 0, res.stderr
    on_a = {m.key(): m for m in read_topic(kafka_broker, a, expect=3)}
    on_b = read_topic(kafka_broker, b, expect=1)
    assert set(on_a) == {b"ka", b"kt", b"kd"} and len(on_b) == 1
    ma = on_a[b"ka"]
    assert (ma.partition(), ma.value(), ma.timestamp()[1]) == (3, b"\x00raw", T0)
    assert headers_of(ma) == [
        *hdrs,
        ("amberflo.origin", f"{a}/3/11".encode()),
        ("amberflo.replay.count", b"1"),
        ("amberflo.replay.source", f"{dlq}/0/0".encode()),
    ]
    mb = on_b[0]
    assert (mb.partition(), mb.key(), mb.value()) == (1, None, b'{"meterApiName":"m"}')
    assert headers_of(mb) == [
        ("amberflo.origin", f"{b}/1/5".encode()),
        ("amberflo.replay.count", b"1"),
        ("amberflo.replay.source", f"{dlq}/0/1".encode()),
    ]
    mt = on_a[b"kt"]
    assert headers_of(mt) == [
        ("amberflo.origin", b"first/2/9"),
        ("amberflo.replay.count", b"2"),
        ("amberflo.replay.source", f"{dlq}/0/2".encode()),
    ]


def test_inspect_streams_rows_before_the_topic_is_read_to_the_end(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    source, dlq = f"src-{name()}", topic_factory(1, prefix="dlq")
    craft(kafka_broker, dlq, dead_letters(150, source, 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env["CONNECTOR_KAFKA__BOOTSTRAP_SERVERS"] = kafka_broker  # and nothing else
    # --wait 30: the end of the topic is assumed only 30 s after its last record, so every row
    # seen before then was printed while reading, not collected until the end.
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "dlq", "inspect", "--topic", dlq, "--wait", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rows = 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while rows < 100 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            rows += f"{source}/" in line
        assert rows >= 100, f"only {rows} rows printed before the end of the topic"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)


def test_duplicate_letters_of_one_record_are_inspected_and_replayed_once(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    env_for: Callable[..., dict[str, str]],
) -> None:
    """A DLQ as versions before 0.2 could leave it after crashes: three records, two of them
    dead-lettered two and three times. inspect counts three and says how many it left out;
    replay republishes three records."""
    source = topic_factory(4)
    dlq = topic_factory(1, prefix="dlq")
    letters = dead_letters(3, source, 1)
    craft(
        kafka_broker, dlq, [letters[0], letters[1], letters[0], letters[2], letters[1], letters[1]]
    )
    env = env_for(source, f"g-{name()}")
    shown = cli(env, "inspect", "--topic", dlq, "--wait", "0.5")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1] == (
        "3 dead letters — sink 3 (EventRejected 3); 3 more of the same records not shown "
        "(duplicates)"
    )
    res = cli(env, "replay", "--topic", dlq, "--wait", "0.5")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (
        f"republished 3 of 6 dead letters read ({source} 3); 0 not selected; 3 duplicates of "
        "records already read"
    )
    assert sorted(m.key() for m in read_topic(kafka_broker, source, expect=3)) == [
        b"k0",
        b"k1",
        b"k2",
    ]
