"""Bad configuration and unreachable dependencies: one readable line, a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from tests.conftest import Emulator
from tests.integration.harness import committed, connector_env, produce, read_all


def run(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "run"],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}


def test_bad_setting_exits_2_naming_the_variable() -> None:
    env = {
        **clean_env(),
        "CONNECTOR_KAFKA__TOPICS": "t",
        "CONNECTOR_AMBERFLO__API_KEY": "k",
        "CONNECTOR_SINK__BATCH_SIZE": "0",
    }
    res = run(env)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "amberflo-connector: CONNECTOR_SINK__BATCH_SIZE: must be between 1 and 1000 (got 0)"
    )
    assert "Traceback" not in res.stderr + res.stdout


def test_unreachable_broker_names_the_address(amberflo_emulator: Emulator) -> None:
    env = connector_env(
        "127.0.0.1:1",
        "t",
        amberflo_emulator.base_url,
        amberflo_emulator.api_key,
        "g",
        CONNECTOR_KAFKA__STARTUP_TIMEOUT_S="2",
    )
    res = run(env)
    assert res.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_topic(kafka_broker: str, amberflo_emulator: Emulator) -> None:
    env = connector_env(
        kafka_broker,
        "no-such-topic-xyz",
        amberflo_emulator.base_url,
        amberflo_emulator.api_key,
        "g",
    )
    res = run(env)
    assert res.returncode == 1
    assert "no-such-topic-xyz" in res.stderr and "CONNECTOR_KAFKA__TOPICS" in res.stderr


def test_unreachable_amberflo(kafka_broker: str, topic_factory: Callable[..., str]) -> None:
    env = connector_env(
        kafka_broker,
        topic_factory(1),
        "http://127.0.0.1:1",
        "k",
        "g",
        CONNECTOR_KAFKA__STARTUP_TIMEOUT_S="1",
    )
    res = run(env)
    assert res.returncode == 1
    assert "cannot reach Amberflo at http://127.0.0.1:1" in res.stderr


def test_wrong_api_key_stops_with_nothing_committed_or_dead_lettered(
    kafka_broker: str, topic_factory: Callable[..., str], amberflo_emulator: Emulator
) -> None:
    topic = topic_factory(1)
    produce(kafka_broker, topic, [{"customerId": "c", "meterApiName": "m"}] * 10)
    env = connector_env(kafka_broker, topic, amberflo_emulator.base_url, "wrong-key", "g401")
    res = run(env)
    assert res.returncode == 1
    assert "rejected the API key (HTTP 401" in res.stderr
    assert "wrong-key" not in res.stderr + res.stdout
    assert committed(kafka_broker, "g401", topic, 1)[0] < 0
    assert read_all(kafka_broker, f"{topic}.dlq", 1, timeout=3) == []
