"""``amberflo-connector produce``: sample usage in each format, read back from the broker and
mapped with the mappings entry the command prints, gives the totals the command printed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest
import yaml
from click.testing import CliRunner

from connector.cli.main import cli
from connector.formats import Mappers
from connector.local_registry import LocalSchemaRegistry
from connector.records import SourceRecord
from connector.samples import FORMATS
from connector.settings import Settings
from tests.integration.failure_harness import read_topic


@pytest.mark.parametrize("fmt", FORMATS)
def test_produce_publishes_what_its_printed_mapping_reads(
    fmt: str,
    kafka_broker: str,
    topic_factory: Callable[..., str],
    schema_registry: LocalSchemaRegistry,
) -> None:
    topic = topic_factory(2)
    args = ["produce", "--topic", topic, "--events", "300", "--customers", "3"]
    args += ["--format", fmt, "--bootstrap-servers", kafka_broker]
    result = CliRunner().invoke(cli, [*args, "--schema-registry", schema_registry.url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Published 300 usage records ({fmt}) to {topic} at {kafka_broker}."
    printed = {
        meter: float(value.replace(",", ""))
        for meter, value in (line.strip().split(": ") for line in lines[1:4])
    }
    entry = yaml.safe_load("\n".join(lines[5:]))["mappings"] if fmt != "native" else []
    settings = Settings(
        kafka={"topics": [topic]},
        amberflo={"api_key": "k"},
        mappings=entry,
        schema_registry={"url": schema_registry.url},
    )
    mapper = Mappers(settings).for_topic(topic)
    sums: dict[str, float] = defaultdict(float)
    ids = set()
    for message in read_topic(kafka_broker, topic, expect=300):
        for event in mapper(SourceRecord.of(message)):
            sums[event.meter_api_name] += event.meter_value
            ids.add(event.unique_id)
    assert dict(sums) == pytest.approx(printed)
    assert len(ids) == 300  # every record one event with a uniqueId of its own


def test_produce_avro_without_a_registry_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["produce", "--topic", "t", "--format", "avro"], env={})
    assert result.exit_code == 2
    assert "--format avro needs --schema-registry URL" in result.output
