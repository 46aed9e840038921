"""Bad configuration and unreachable dependencies: one readable line, a non-zero exit."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

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
        CONNECTOR_KAFKA__STARTUP_TIMEOUT_S="3",
    )
    res = run(env)
    assert res.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in res.stderr
    assert "Traceback" not in res.stderr
    # librdkafka's connection failures (dozens a second) go through the connector's logging,
    # not straight to stderr: the user's message is not buried under them.
    assert len(res.stderr.strip().splitlines()) <= 3, res.stderr


@pytest.mark.parametrize(
    "command",
    [["dlq", "inspect"], ["mappings", "preview"], ["reconcile", "--from", "-1h", "--to", "now"]],
)
def test_tools_with_an_unreachable_broker_end_with_one_line_naming_the_key(
    command: list[str],
) -> None:
    env = {
        **clean_env(),
        "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "CONNECTOR_KAFKA__TOPICS": "usage",
        "CONNECTOR_KAFKA__STARTUP_TIMEOUT_S": "2",
        "CONNECTOR_AMBERFLO__API_KEY": "k",
        "CONNECTOR_AMBERFLO__BASE_URL": "http://127.0.0.1:1",
    }
    res = subprocess.run(
        [sys.executable, "-m", "connector", *command],
        env=env,
        text=True,
        capture_output=True,
        timeout=90,
    )
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) <= 3, res.stderr
    assert "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS" in lines[-1] or "127.0.0.1:1" in lines[-1]


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


# Every configuration mistake: exit 2, ONE line naming the key (or the file and line), no
# traceback — for run, config check and the dlq commands alike.  (command, env, files, needle)
BAD_CONFIGS: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("run", {"CONNECTOR_SINK__BATCH_SIZE": "0"}, {}, "CONNECTOR_SINK__BATCH_SIZE: must be"),
    ("run", {"CONNECTOR_KAFKA__CONSUMER": "{bad"}, {}, "CONNECTOR_KAFKA__CONSUMER: not a valid"),
    (
        "config check",
        {"CONNECTOR_KAFKA__CONSUMER": '{"a": [1]}'},
        {},
        "CONSUMER__A: must be str, int, float or bool",
    ),
    ("config check", {"CONNECTOR_KAFKA__PRODUCER": "[1, 2]"}, {}, "CONNECTOR_KAFKA__PRODUCER: "),
    ("run", {"CONNECTOR_KAFKA__CONSUMER": '{"foo.bar": 1}'}, {}, 'property: "foo.bar"'),
    ("run", {"CONNECTOR_KAFKA__CONSUMER": '{"session.timeout.ms": "x"}'}, {}, "session.timeout"),
    ("run", {"CONNECTOR_KAFKA__CONSUMER": '{"enable.auto.commit": true}'}, {}, "enable.auto.c"),
    ("config check", {"CONNECTOR_KAFKA__CONSUMER": '{"enable.auto.offset.store": 1}'}, {}, "store"),
    ("run", {"CONNECTOR_KAFKA__CONSUMER": '{"isolation.level": "read_uncommitted"}'}, {}, "isol"),
    ("run", {"CONNECTOR_KAFKA__PRODUCER": '{"acks": 1}'}, {}, "'acks' cannot be overridden"),
    ("run", {"CONNECTOR_KAFKA__PRODUCER": '{"enable.idempotence": false}'}, {}, "idempotence"),
    ("config check", {"CONNECTOR_KAFKA__TOPICS": '["a", '}, {}, "CONNECTOR_KAFKA__TOPICS: not"),
    ("run", {"CONNECTOR_KAFKA__TOPICS": "^usage[.*"}, {}, "not a valid regular expression"),
    ("run", {"CONNECTOR_SINK__GZIP": "maybe"}, {}, "CONNECTOR_SINK__GZIP: "),
    ("run", {"CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": "soon"}, {}, "COMMIT_INTERVAL_MS: input"),
    ("config check", {"CONNECTOR_METRICS_PORT": "70000"}, {}, "CONNECTOR_METRICS_PORT: must be"),
    ("config check", {"CONNECTOR_LOG_LEVEL": "LOUD"}, {}, "CONNECTOR_LOG_LEVEL: "),
    ("run", {"CONNECTOR_AMBERFLO__API_KEY": ""}, {}, "CONNECTOR_AMBERFLO__API_KEY: is required"),
    ("run", {"CONNECTOR_AMBERFLO__BASE_URL": "ftp://x"}, {}, "BASE_URL: must start with http"),
    ("run", {"CONNECTOR_CONFIG_FILE": "{d}/c.yaml"}, {"c.yaml": "sink:\n  gzip: [yes\n"}, "line 3"),
    ("run", {"CONNECTOR_CONFIG_FILE": "{d}/c.yaml"}, {"c.yaml": "- a\n- b\n"}, "a mapping"),
    ("config check", {"CONNECTOR_CONFIG_FILE": "{d}/none.yaml"}, {}, "none.yaml: cannot read"),
    ("run", {"CONNECTOR_CONFIG_FILE": "{d}/c.yaml"}, {"c.yaml": "sink: {batchsize: 3}"}, "BATCHS"),
    ("run", {"CONNECTOR_CONFIG_FILE": "{d}/c.yaml"}, {"c.yaml": "sink: 5"}, "CONNECTOR_SINK: "),
    ("dlq inspect", {"CONNECTOR_SINK__MAX_IN_FLIGHT": "0"}, {}, "CONNECTOR_SINK__MAX_IN_FLIGHT"),
    ("dlq replay", {"CONNECTOR_KAFKA__CONSUMER": '{"isolation.level": "x"}'}, {}, "isolation"),
    ("dlq inspect", {"CONNECTOR_KAFKA__TOPICS": "^p.*"}, {}, "give --topic"),
    ("dlq inspect", {"CONNECTOR_KAFKA__CONSUMER": '{"security.protocol": "x"}'}, {}, "security"),
    ("run --workers 0", {}, {}, "'--workers': 0 is not in the range"),
    ("produce --topic t -X foo.bar=1", {}, {}, '-X: No such configuration property: "foo.bar"'),
    ("mappings test no-such-cases.yaml", {}, {}, "'no-such-cases.yaml' does not exist"),
]


BASE_ENV = {
    "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached: config first
    "CONNECTOR_KAFKA__TOPICS": "usage",
    "CONNECTOR_AMBERFLO__API_KEY": "k",
    "CONNECTOR_AMBERFLO__BASE_URL": "http://127.0.0.1:1",
    "CONNECTOR_KAFKA__STARTUP_TIMEOUT_S": "1",
}
THROUGH_A_PROCESS = (1, 4, 19, 21, 25, 27, 28, 29)
"""Cases also run as real processes (librdkafka could print to the process's stderr): every
command, malformed env JSON, a YAML line, properties librdkafka refuses."""


def _case(i: int, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    command, env, files, _needle = BAD_CONFIGS[i]
    d = tmp_path / str(i)
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return command.split(), {**BASE_ENV, **{k: v.replace("{d}", str(d)) for k, v in env.items()}}


def _in_process(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """The console script's ``main()`` in this process (what the process runs, minus its
    start-up), with ``env`` as the whole environment."""
    from connector.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, signal.getsignal(signal.SIGTERM)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() configures logging
    try:
        with (
            mock.patch.dict(os.environ, env, clear=True),
            redirect_stdout(out),
            redirect_stderr(err),
        ):
            sys.argv = ["amberflo-connector", *args]
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved[0]
        signal.signal(signal.SIGTERM, saved[1])
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, out.getvalue() + err.getvalue()


def _check(i: int, code: int, output: str) -> None:
    command, env, _files, needle = BAD_CONFIGS[i]
    case = f"{command} with {env}: {output!r}"
    assert code == 2, case
    assert len(output.strip().splitlines()) == 1, case
    assert "Traceback" not in output, case
    assert needle in output, case


def test_every_configuration_mistake_is_one_line_and_exit_2(tmp_path: Path) -> None:
    assert len(BAD_CONFIGS) >= 20
    for i in range(len(BAD_CONFIGS)):
        _check(i, *_in_process(*_case(i, tmp_path)))


def test_configuration_mistakes_through_real_processes(tmp_path: Path) -> None:
    def attempt(i: int) -> tuple[int, str]:
        args, env = _case(i, tmp_path)
        res = subprocess.run(
            [sys.executable, "-m", "connector", *args],
            env={**clean_env(), **env},
            text=True,
            capture_output=True,
            timeout=60,
        )
        return res.returncode, res.stdout + res.stderr

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(attempt, THROUGH_A_PROCESS))
    for i, (code, output) in zip(THROUGH_A_PROCESS, results, strict=True):
        _check(i, code, output)


def test_debug_shows_debug_logs_for_run() -> None:
    env = {
        **clean_env(),
        "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "CONNECTOR_KAFKA__TOPICS": "usage",
        "CONNECTOR_AMBERFLO__API_KEY": "secret-key",
        "CONNECTOR_AMBERFLO__BASE_URL": "http://127.0.0.1:1",
        "CONNECTOR_KAFKA__STARTUP_TIMEOUT_S": "0.5",
    }
    res = subprocess.run(
        [sys.executable, "-m", "connector", "--debug", "run"],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert " DEBUG connector: settings: " in res.stderr
    assert "secret-key" not in res.stderr


def test_emulator_on_a_taken_port_or_an_unopenable_db_is_one_line(tmp_path: Path) -> None:
    """Before it says it is listening: one line naming the option, exit 1 (not uvicorn's own
    error and exit 3, nor a sqlite3 traceback)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cases = [
            (["--port", str(port), "--db", ":memory:"], f"cannot listen on 127.0.0.1:{port}"),
            (
                ["--port", "0", "--db", str(tmp_path / "no-such-dir" / "e.db")],
                "(--db): unable to open database file",
            ),
        ]
        for args, needle in cases:
            res = subprocess.run(
                [sys.executable, "-m", "connector", "emulator", *args],
                env=clean_env(),
                text=True,
                capture_output=True,
                timeout=60,
            )
            output = res.stdout + res.stderr
            assert res.returncode == 1, output
            assert len(output.strip().splitlines()) == 1 and needle in output, output
