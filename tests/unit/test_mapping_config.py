"""The ``mappings`` section: validation at load, and which mapper reads which topic."""

from pathlib import Path
from typing import Any

import orjson
import pytest

from connector.errors import ConfigError, DecodeError
from connector.formats import DECODERS, Mappers, known_formats
from connector.formats.config import Mapping
from connector.formats.ids import UniqueIds
from connector.formats.native import map_json
from connector.records import SourceRecord
from connector.settings import Settings, load_settings

JSON_RULES = {"format": "json", "customer_id": {"path": "tenant.id"}, "meter": "api"}


def settings(*mappings: dict[str, Any]) -> Settings:
    return Settings(kafka={"topics": ["t"]}, amberflo={"api_key": "k"}, mappings=list(mappings))


def record(topic: str, value: Any, offset: int = 3) -> SourceRecord:
    return SourceRecord(topic, 1, offset, 1_700_000_000_000, None, orjson.dumps(value))


NATIVE = {"customerId": "c", "meterApiName": "m", "meterValue": 2, "dimensions": {"r": "x"}}


def test_without_mappings_every_topic_is_native_byte_for_byte() -> None:
    s = settings()
    mapper = Mappers(s).for_topic("anything")
    rec = record("anything", NATIVE)
    ids = UniqueIds(s.unique_id_namespace)
    assert [e.payload() for e in mapper(rec)] == [e.payload() for e in map_json(rec, ids)]
    assert orjson.dumps(mapper(rec)[0].payload()) == orjson.dumps(map_json(rec, ids)[0].payload())


def test_an_exact_name_wins_over_a_pattern_and_the_first_pattern_wins() -> None:
    s = settings(
        {"topics": ["^usage\\..*"], **JSON_RULES, "meter": "first-pattern"},
        {"topics": ["^usage\\.api.*"], **JSON_RULES, "meter": "second-pattern"},
        {"topics": ["usage.api"], **JSON_RULES, "meter": "exact"},
    )
    mappers = Mappers(s)
    value = {"tenant": {"id": "c"}}
    assert mappers.for_topic("usage.api")(record("usage.api", value))[0].meter_api_name == "exact"
    [ev] = mappers.for_topic("usage.api2")(record("usage.api2", value))
    assert ev.meter_api_name == "first-pattern"
    # a topic no entry names: native
    assert mappers.mapping_for("other") is None
    [ev] = mappers.for_topic("other")(record("other", NATIVE))
    assert ev.meter_api_name == "m"


def test_a_native_entry_takes_filters() -> None:
    s = settings(
        {"topics": ["t"], "filters": [{"dimension": "r", "values": ["x"], "action": "EXCLUDE"}]}
    )
    mapper = Mappers(s).for_topic("t")
    assert mapper(record("t", NATIVE)) == []
    assert len(mapper(record("t", {**NATIVE, "dimensions": {"r": "y"}}))) == 1


def test_a_registered_decoder_is_a_format(monkeypatch: pytest.MonkeyPatch) -> None:
    def upper_decoder(mapping: Mapping, _s: Settings) -> Any:
        assert mapping.format == "shouty"

        def decode(rec: SourceRecord) -> Any:
            if not rec.value:
                raise DecodeError("empty")
            return {"who": rec.value.decode().upper()}

        return decode

    monkeypatch.setitem(DECODERS, "shouty", upper_decoder)
    assert "shouty" in known_formats()
    s = settings(
        {"topics": ["t"], "format": "shouty", "customer_id": {"path": "who"}, "meter": "m"}
    )
    mapper = Mappers(s).for_topic("t")
    rec = SourceRecord("t", 0, 0, 1_700_000_000_000, None, b"acme")
    assert mapper(rec)[0].customer_id == "ACME"
    with pytest.raises(DecodeError):
        mapper(rec._replace(value=b""))


BAD = [
    ({"format": "avro9"}, "mappings[0].format: unknown format 'avro9' (known: native, json"),
    ({"customer_id": {"path": "a..b"}}, "mappings[0].customer_id.path: is not a dotted path"),
    ({"customer_id": {"path": "a[x]"}}, "mappings[0].customer_id.path: is not a dotted path"),
    ({"customer_id": {"expr": "a[?"}}, "mappings[0].customer_id.expr: is not a valid JMESPath"),
    ({"customer_id": {"expr": "nope(a)"}}, "mappings[0].customer_id.expr: calls unknown JMESPath"),
    ({"customer_id": None}, "mappings[0]: customer_id is required (format json)"),
    ({"customer_id": {"path": "a", "expr": "b"}}, "mappings[0].customer_id: give exactly one of"),
    ({"customer_id": {"default": "x"}}, "mappings[0].customer_id: give exactly one of"),
    ({"customer_id": {"constant": "x", "default": "y"}}, "mappings[0].customer_id: a constant"),
    ({"schema": "/no/such.avsc"}, "mappings[0].schema: schema file '/no/such.avsc' does not"),
    ({"value": {"path": "v", "unit": "s"}}, "mappings[0]: value takes no unit"),
    ({"time": {"path": "t", "unit": "ns"}}, "mappings[0].time.unit: input should be 'ms', 's' or"),
    ({"topics": ["^a("]}, "mappings[0].topics: '^a(' is not a valid regular expression"),
    ({"topics": []}, "mappings[0].topics: "),
    ({"meters": {"a": 1}}, "mappings[0]: give meter (with value) or meters, exactly one"),
    ({"meter": None}, "mappings[0]: give meter (with value) or meters, exactly one"),
    ({"meter": None, "meters": {"a": 1}, "value": 2}, "mappings[0]: value goes with meter"),
    ({"unique_id": "fixed"}, "mappings[0]: unique_id must be a path or expr"),
    ({"colour": "red"}, "mappings[0].colour: is not a known setting"),
    (
        {"filters": [{"dimension": "r", "values": ["x"], "action": "DROP"}]},
        "mappings[0].filters[0].action: input should be 'INCLUDE' or 'EXCLUDE'",
    ),
    (
        {"filters": [{"dimension": "r", "values": ["x"], "action": "INCLUDE"}]},
        "mappings[0]: filters: dimension 'r' is not one of this mapping's dimensions (none)",
    ),
    (
        {"filters": [{"dimension": "r", "values": [{"x": 1}], "action": "INCLUDE"}]},
        "mappings[0].filters[0].values: must be a string, number or boolean (got object)",
    ),
    ({"format": "native"}, "mappings[0]: format native reads Amberflo-shaped records and takes"),
    (
        {"dimensions": {"src": {"path": "$ce.source"}}},
        "mappings[0]: dimensions.src: $ce.source reads a CloudEvents attribute; format json has",
    ),
    (
        {"format": "cloudevents", "customer_id": {"path": "$ce.tenant.id"}},
        "mappings[0].customer_id.path: '$ce.tenant.id': a CloudEvents attribute is read as",
    ),
    (
        {"format": "cloudevents", "meter": {"path": "$ce.data"}},
        "mappings[0].meter.path: $ce.data: data is not a context attribute",
    ),
    (
        {"format": "cloudevents", "meter": {"expr": "join('/', [$ce.source, x])"}},
        "mappings[0].meter.expr: is not a valid JMESPath expression",
    ),
]


@pytest.mark.parametrize(("change", "line"), BAD, ids=[b[1][:48] for b in BAD])
def test_a_bad_mapping_is_one_line_naming_the_key(
    change: dict[str, Any], line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("CONNECTOR_KAFKA__TOPICS", "CONNECTOR_AMBERFLO__API_KEY", "CONNECTOR_MAPPINGS"):
        monkeypatch.delenv(key, raising=False)
    entry = {"topics": ["t"], **JSON_RULES, **change}
    entry = {k: v for k, v in entry.items() if v is not None}
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(
        orjson.dumps(
            {"kafka": {"topics": ["t"]}, "amberflo": {"api_key": "k"}, "mappings": [entry]}
        )
    )
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.exit_code == 2
    [got] = str(info.value).splitlines()
    assert got.startswith(line), got


def test_mappings_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_KAFKA__TOPICS", "t")
    monkeypatch.setenv("CONNECTOR_AMBERFLO__API_KEY", "k")
    monkeypatch.setenv(
        "CONNECTOR_MAPPINGS", orjson.dumps([{"topics": ["t"], **JSON_RULES}]).decode()
    )
    [m] = load_settings().mappings
    assert m.format == "json" and m.customer_id is not None and m.customer_id.path == "tenant.id"


SCHEMA = {
    "type": "record",
    "name": "Usage",
    "fields": [{"name": "tenant", "type": "string"}, {"name": "n", "type": "long"}],
}
AVRO_RULES = {
    "format": "avro-schemaless",
    "customer_id": {"path": "tenant"},
    "meter": "m",
    "value": {"path": "n"},
}


def _config(directory: Path, mapping: dict[str, Any] | None) -> Path:
    cfg = directory / "connector.yaml"
    doc: dict[str, Any] = {"kafka": {"topics": ["t"]}, "amberflo": {"api_key": "k"}}
    if mapping is not None:
        doc["mappings"] = [{"topics": ["t"], **AVRO_RULES, **mapping}]
    cfg.write_bytes(orjson.dumps(doc))
    return cfg


def _schema_at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(SCHEMA))
    return path


def _decodes(settings: Settings) -> None:
    import io

    import fastavro

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(SCHEMA), {"tenant": "acme", "n": 3})
    [event] = Mappers(settings).for_topic("t")(record("t", None)._replace(value=body.getvalue()))
    assert (event.customer_id, event.payload()["meterValue"]) == ("acme", 3)


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in ("CONNECTOR_KAFKA__TOPICS", "CONNECTOR_AMBERFLO__API_KEY", "CONNECTOR_MAPPINGS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("CONNECTOR_CONFIG_FILE", raising=False)
    return monkeypatch


def test_a_schema_path_in_a_config_file_is_relative_to_that_file(
    tmp_path: Path, bare_env: pytest.MonkeyPatch
) -> None:
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    elsewhere.mkdir()
    schema = _schema_at(conf / "schemas" / "usage.avsc")
    cfg = _config(conf, {"schema": "schemas/usage.avsc"})
    bare_env.chdir(elsewhere)
    settings = load_settings(cfg)
    assert settings.mappings[0].schema_file == schema
    _decodes(settings)
    # a schema next to the working directory but not next to the file is not the one named
    _schema_at(elsewhere / "schemas" / "other.avsc")
    with pytest.raises(ConfigError) as info:
        load_settings(_config(conf, {"schema": "schemas/other.avsc"}))
    assert str(info.value) == (
        f"mappings[0].schema: schema file '{conf / 'schemas' / 'other.avsc'}' does not exist"
    )
    # absolute, and ~, are taken as they are
    assert load_settings(_config(conf, {"schema": str(schema)})).mappings[0].schema_file == schema
    bare_env.setenv("HOME", str(conf))
    [m] = load_settings(_config(conf, {"schema": "~/schemas/usage.avsc"})).mappings
    assert m.schema_file == schema


def test_a_schema_path_from_the_environment_is_relative_to_the_working_directory(
    tmp_path: Path, bare_env: pytest.MonkeyPatch
) -> None:
    conf, cwd = tmp_path / "conf", tmp_path / "cwd"
    conf.mkdir()
    schema = _schema_at(cwd / "schemas" / "usage.avsc")
    bare_env.chdir(cwd)
    entry = {"topics": ["t"], **AVRO_RULES, "schema": "schemas/usage.avsc"}
    bare_env.setenv("CONNECTOR_MAPPINGS", orjson.dumps([entry]).decode())
    bare_env.setenv("CONNECTOR_KAFKA__TOPICS", "t")
    bare_env.setenv("CONNECTOR_AMBERFLO__API_KEY", "k")
    for settings in (load_settings(), load_settings(_config(conf, None))):
        assert settings.mappings[0].schema_file is not None
        assert settings.mappings[0].schema_file.resolve() == schema
        _decodes(settings)
