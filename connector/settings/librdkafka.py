"""The librdkafka properties of the settings, checked by building the clients: the consumer
and the DLQ producer are made without ``bootstrap.servers`` (nothing connects), so a property
librdkafka refuses is one line naming the setting that holds it, before anything starts."""

from __future__ import annotations

import re

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from connector.kafka import consumer_config, dlq_producer_config
from connector.settings.problems import env_name
from connector.settings.root import Settings

_OWN_PROPERTIES = {
    "bootstrap.servers": ("kafka", "bootstrap_servers"),
    "group.id": ("kafka", "group_id"),
    "partition.assignment.strategy": ("kafka", "assignment_strategy"),
    "queued.max.messages.kbytes": ("kafka", "fetch_queue_kbytes"),
}


def config_problems(settings: Settings) -> list[str]:
    """Build the consumer and the DLQ producer without connecting; one line per refusal,
    naming the setting that holds the property librdkafka refused."""
    problems: list[str] = []
    for kind, make, conf in (
        ("consumer", Consumer, consumer_config(settings)),
        ("producer", Producer, dlq_producer_config(settings, "amberflo-connector-check")),
    ):
        conf = {k: v for k, v in conf.items() if k != "bootstrap.servers"}
        conf["log_level"] = 0  # librdkafka's own warnings would be a second line
        try:
            client = make(conf)
            if isinstance(client, Consumer):
                client.close()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            text = err.str() if isinstance(err, KafkaError) else str(exc)
        except (TypeError, ValueError) as exc:
            text = str(exc)
        else:
            continue
        text = text.removeprefix(f"Failed to create {kind}: ")
        line = f"{_setting_of(settings, kind, text)}: {text}"
        if not any(p.endswith(f": {text}") for p in problems):  # shared security properties
            problems.append(line)
    return problems


def _setting_of(settings: Settings, kind: str, message: str) -> str:
    """The environment variable that holds the property a librdkafka message names."""
    k = settings.kafka
    names = re.findall(r"[\"`']([A-Za-z0-9_.]+)[\"`']", message)
    names += re.findall(r"\b([a-z]+(?:\.[a-z]+)+)\b", message)
    for name in names:
        if kind == "producer" and name in k.producer:
            return env_name(("kafka", "producer"))
        if name in k.consumer:
            return env_name(("kafka", "consumer"))
        if name in _OWN_PROPERTIES:
            return env_name(_OWN_PROPERTIES[name])
    return env_name(("kafka", kind))
