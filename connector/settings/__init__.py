"""The configuration tree.

Sources, strongest first: environment variables (prefix ``CONNECTOR_``, nesting with ``__``,
e.g. ``CONNECTOR_SINK__BATCH_SIZE``), then the YAML file named by ``--config`` or
``CONNECTOR_CONFIG_FILE``, then the defaults below.  ``load_settings`` turns every validation
problem into one line naming the environment variable, and raises ``ConfigError`` (exit 2).

Import from here; the modules are

* ``root``: ``Settings``, the root of the tree, and the order of its sources (``sources``: the
  YAML file and its shorthands);
* the sections by concern: ``kafka`` (source consumer, dead-letter topics, retention guard),
  ``delivery`` (Amberflo, sink, S3), ``mapping`` (uniqueIds, Schema Registry) and
  ``operations`` (logging, meter definitions, reconcile), on ``base.Section``;
* ``load``: ``load_settings``, with ``problems`` (one line per problem, naming the variable)
  and ``librdkafka`` (properties librdkafka refuses, found by building the clients);
* ``reference``: the generated configuration reference (docs/configuration.md).
"""

from connector.settings.delivery import AmberfloSettings, S3Settings, SinkSettings
from connector.settings.kafka import (
    PROTECTED_CONSUMER,
    PROTECTED_PRODUCER,
    DlqSettings,
    KafkaSettings,
    LibrdkafkaValue,
    RetentionGuardSettings,
)
from connector.settings.load import CONFIG_FILE_ENV, load_settings
from connector.settings.mapping import SchemaRegistrySettings, TransformSettings
from connector.settings.operations import (
    LogSettings,
    MeterDefinition,
    MetersSettings,
    ReconcileSettings,
)
from connector.settings.reference import reference_markdown
from connector.settings.root import Settings

__all__ = [
    "CONFIG_FILE_ENV",
    "PROTECTED_CONSUMER",
    "PROTECTED_PRODUCER",
    "AmberfloSettings",
    "DlqSettings",
    "KafkaSettings",
    "LibrdkafkaValue",
    "LogSettings",
    "MeterDefinition",
    "MetersSettings",
    "ReconcileSettings",
    "RetentionGuardSettings",
    "S3Settings",
    "SchemaRegistrySettings",
    "Settings",
    "SinkSettings",
    "TransformSettings",
    "load_settings",
    "reference_markdown",
]
