import json
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.kafka import consumer_config, dlq_producer_config
from connector.settings import PROTECTED_CONSUMER, PROTECTED_PRODUCER, Settings, load_settings

BASE = {"CONNECTOR_KAFKA__TOPICS": "usage", "CONNECTOR_AMBERFLO__API_KEY": "secret-key"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(__import__("os").environ):
        if key.startswith("CONNECTOR_"):
            monkeypatch.delenv(key)
    for k, v in BASE.items():
        monkeypatch.setenv(k, v)
    return monkeypatch


def test_defaults(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.kafka.group_id == "amberflo-connector"
    assert s.sink.batch_size == 500 and s.sink.linger_ms == 200 and s.sink.max_in_flight == 4
    assert s.sink.max_buffered_records == 50_000 and s.sink.gzip is True
    assert s.kafka.commit_interval_ms == 1000 and s.shutdown_timeout_s == 25
    assert s.amberflo.base_url == "https://app.amberflo.io"
    assert s.amberflo.effective_ingest_url == "https://app.amberflo.io"
    assert s.dlq_topic_for("usage") == "usage.dlq"
    assert s.sink.retry_timeout_s is None


def test_topics_comma_or_json(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONNECTOR_KAFKA__TOPICS", " a, b ,^c.* ")
    assert load_settings().kafka.topics == ["a", "b", "^c.*"]
    env.setenv("CONNECTOR_KAFKA__TOPICS", '["x", "y"]')
    assert load_settings().kafka.topics == ["x", "y"]


def test_consumer_passthrough_map(env: pytest.MonkeyPatch) -> None:
    given = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "fetch.min.bytes": 1,
    }
    env.setenv("CONNECTOR_KAFKA__CONSUMER", json.dumps(given))
    assert load_settings().kafka.consumer == given


def test_api_key_is_secret(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert "secret-key" not in repr(s) and "secret-key" not in str(s.amberflo)
    assert s.amberflo.api_key.get_secret_value() == "secret-key"


def test_bad_values_one_line_each_naming_the_env_var(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONNECTOR_SINK__BATCH_SIZE", "0")
    env.setenv("CONNECTOR_AMBERFLO__BASE_URL", "ftp://x")
    env.setenv("CONNECTOR_SINK__GZIP", "maybe")
    with pytest.raises(ConfigError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert "CONNECTOR_SINK__BATCH_SIZE: must be between 1 and 1000 (got 0)" in lines
    assert any(
        line.startswith("CONNECTOR_AMBERFLO__BASE_URL: must start with http") for line in lines
    )
    assert any(line.startswith("CONNECTOR_SINK__GZIP: ") for line in lines)
    assert len(lines) == 3
    assert info.value.exit_code == 2


def test_missing_required(env: pytest.MonkeyPatch) -> None:
    env.delenv("CONNECTOR_AMBERFLO__API_KEY")
    env.delenv("CONNECTOR_KAFKA__TOPICS")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).splitlines() == [
        "CONNECTOR_KAFKA__TOPICS: is required",
        "CONNECTOR_AMBERFLO__API_KEY: is required",
    ]


def test_yaml_file_and_env_override(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  group_id: from-file\n  topics: [f1]\nsink:\n  batch_size: 100\n")
    env.delenv("CONNECTOR_KAFKA__TOPICS")
    env.setenv("CONNECTOR_SINK__BATCH_SIZE", "200")
    s = load_settings(cfg)
    assert s.kafka.group_id == "from-file" and s.kafka.topics == ["f1"]
    assert s.sink.batch_size == 200
    env.setenv("CONNECTOR_CONFIG_FILE", str(cfg))
    assert load_settings().kafka.group_id == "from-file"


def test_bad_yaml_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(bad)


def test_unknown_key_in_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sink:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match=r"CONNECTOR_SINK__BATCHSIZE: is not a known setting"):
        load_settings(cfg)


def test_namespace_uuid_or_text() -> None:
    a = Settings(
        kafka={"topics": ["t"]},
        amberflo={"api_key": "k"},
        transform={"unique_id_namespace": "6f1c2a5e-0d7b-4c1e-9a55-3f0b7f2d9c11"},
    )
    assert str(a.unique_id_namespace) == "6f1c2a5e-0d7b-4c1e-9a55-3f0b7f2d9c11"
    b = Settings(kafka={"topics": ["t"], "group_id": "g2"}, amberflo={"api_key": "k"})
    c = Settings(kafka={"topics": ["t"], "group_id": "g3"}, amberflo={"api_key": "k"})
    assert b.unique_id_namespace == c.unique_id_namespace  # never the group's
    d = Settings(
        kafka={"topics": ["t"]}, amberflo={"api_key": "k"}, transform={"unique_id_namespace": "x"}
    )
    assert d.unique_id_namespace != b.unique_id_namespace


def test_configuration_reference_matches_the_code() -> None:
    from connector.settings import reference_markdown

    doc = Path(__file__).parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == reference_markdown(), (
        "docs/configuration.md is stale: run `amberflo-connector config reference > "
        "docs/configuration.md`"
    )
    for name in (
        "CONNECTOR_SINK__BATCH_SIZE",
        "CONNECTOR_DLQ__HEADER_STYLE",
        "CONNECTOR_TRANSFORM__UNIQUE_ID_NAMESPACE",
        "CONNECTOR_SHUTDOWN_TIMEOUT_S",
    ):
        assert f"`{name}`" in doc.read_text()


def test_log_section_with_levels_per_logger(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONNECTOR_LOG__LEVEL", "warning")
    env.setenv("CONNECTOR_LOG__FORMAT", "json")
    env.setenv("CONNECTOR_LOG__LEVELS", '{"connector.sink": "debug", "urllib3": "ERROR"}')
    log = load_settings().log
    assert (log.level, log.format) == ("WARNING", "json")
    assert log.levels == {"connector.sink": "DEBUG", "urllib3": "ERROR"}


def test_old_log_names_still_work_and_new_names_win(env: pytest.MonkeyPatch) -> None:
    assert (load_settings().log.level, load_settings().log.format) == ("INFO", "text")
    env.setenv("CONNECTOR_LOG_LEVEL", "debug")
    env.setenv("CONNECTOR_LOG_FORMAT", "json")
    assert (load_settings().log.level, load_settings().log.format) == ("DEBUG", "json")
    env.setenv("CONNECTOR_LOG__LEVEL", "ERROR")
    env.setenv("CONNECTOR_LOG__FORMAT", "text")
    assert (load_settings().log.level, load_settings().log.format) == ("ERROR", "text")


def test_bad_logger_level_names_the_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("CONNECTOR_LOG__LEVELS", '{"connector.sink": "TRACE"}')
    with pytest.raises(ConfigError) as info:
        load_settings()
    (line,) = str(info.value).splitlines()
    assert line.startswith("CONNECTOR_LOG__LEVELS__CONNECTOR.SINK: ")


def test_configure_logging_sets_each_named_logger(env: pytest.MonkeyPatch) -> None:
    import logging

    from connector.cli.options import configure_logging

    env.setenv("CONNECTOR_LOG__LEVEL", "WARNING")
    env.setenv("CONNECTOR_LOG__LEVELS", '{"connector.sink": "DEBUG"}')
    root, sink = logging.getLogger(), logging.getLogger("connector.sink")
    saved = root.level, sink.level
    try:
        configure_logging(load_settings().log)
        assert root.level == logging.WARNING
        assert logging.getLogger("connector.sink").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("connector.worker").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(saved[0])
        sink.setLevel(saved[1])


@pytest.mark.parametrize(
    ("variable", "key", "value"),
    [
        ("CONNECTOR_KAFKA__CONSUMER", "enable.auto.commit", True),
        ("CONNECTOR_KAFKA__CONSUMER", "auto.commit.enable", "true"),
        ("CONNECTOR_KAFKA__CONSUMER", "enable.auto.offset.store", True),
        ("CONNECTOR_KAFKA__CONSUMER", "isolation.level", "read_uncommitted"),
        ("CONNECTOR_KAFKA__CONSUMER", "group.id", "other"),
        ("CONNECTOR_KAFKA__PRODUCER", "acks", 1),
        ("CONNECTOR_KAFKA__PRODUCER", "request.required.acks", 0),
        ("CONNECTOR_KAFKA__PRODUCER", "enable.idempotence", False),
    ],
)
def test_safety_critical_client_properties_cannot_be_overridden(
    env: pytest.MonkeyPatch, variable: str, key: str, value: object
) -> None:
    env.setenv(variable, json.dumps({"fetch.min.bytes": 1, key: value}))
    with pytest.raises(ConfigError) as info:
        load_settings(for_run=False)
    assert str(info.value) == (
        f"{variable}: {key!r} cannot be overridden "
        f"({PROTECTED_CONSUMER.get(key) or PROTECTED_PRODUCER[key]})"
    )
    assert info.value.exit_code == 2


def test_clients_keep_the_delivery_contract_whatever_else_is_configured(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("CONNECTOR_KAFKA__CONSUMER", '{"fetch.wait.max.ms": 7, "client.id": "mine"}')
    env.setenv("CONNECTOR_KAFKA__PRODUCER", '{"linger.ms": 50}')
    s = load_settings()
    consumer = consumer_config(s)
    assert consumer["enable.auto.commit"] is False
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["isolation.level"] == "read_committed"  # aborted usage is never billed
    assert consumer["fetch.wait.max.ms"] == 7 and consumer["client.id"] == "mine"
    producer = dlq_producer_config(s, "x")
    assert producer["acks"] == "all" and producer["enable.idempotence"] is True
    assert producer["linger.ms"] == 50


def test_librdkafka_properties_are_checked_by_building_the_clients(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("CONNECTOR_KAFKA__CONSUMER", '{"no.such.thing": 1}')
    with pytest.raises(ConfigError, match=r"^CONNECTOR_KAFKA__CONSUMER: No such configuration"):
        load_settings()
    env.setenv("CONNECTOR_KAFKA__CONSUMER", "{}")
    env.setenv("CONNECTOR_KAFKA__PRODUCER", '{"batch.size": "big"}')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        'CONNECTOR_KAFKA__PRODUCER: Invalid value for configuration property "batch.size"'
    )


def test_dlq_tools_need_neither_the_api_key_nor_the_topics(env: pytest.MonkeyPatch) -> None:
    env.delenv("CONNECTOR_AMBERFLO__API_KEY")
    env.delenv("CONNECTOR_KAFKA__TOPICS")
    env.setenv("CONNECTOR_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    assert load_settings(for_run=False).kafka.bootstrap_servers == "kafka:9092"
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).splitlines() == [
        "CONNECTOR_KAFKA__TOPICS: is required",
        "CONNECTOR_AMBERFLO__API_KEY: is required",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CONNECTOR_KAFKA__CONSUMER", "{bad", "CONNECTOR_KAFKA__CONSUMER: not a valid JSON map"),
        (
            "CONNECTOR_KAFKA__PRODUCER",
            '{"a": [1]}',
            "CONNECTOR_KAFKA__PRODUCER__A: must be str, int",
        ),
        ("CONNECTOR_KAFKA__TOPICS", '["a", ', "CONNECTOR_KAFKA__TOPICS: not a valid JSON list"),
        ("CONNECTOR_KAFKA__TOPICS", "^us(age", "CONNECTOR_KAFKA__TOPICS: '^us(age' is not a"),
    ],
)
def test_malformed_env_values_are_one_line_naming_the_variable(
    env: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert len(str(info.value).splitlines()) == 1
    assert str(info.value).startswith(expected)


def test_yaml_syntax_error_names_the_line(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  topics: [a, b\nsink:\n  batch_size: 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert str(info.value).startswith(f"{cfg}: not valid YAML at line 3, column ")
    assert len(str(info.value).splitlines()) == 1
