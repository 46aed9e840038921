"""A small Schema Registry for local use: the demo, the tests, trying the ``avro`` format.

It speaks the part of Confluent Schema Registry's REST API that serializers and
deserializers use, with the same paths, content type and error codes, so Confluent's own
clients (``confluent_kafka.schema_registry``, the Java serdes) work against it unchanged:

* ``POST /subjects/{subject}/versions`` registers a schema (``{"schema", "schemaType",
  "references"}``); the same schema gets the same id everywhere, a subject gets a new version
  only for a new schema.  Avro schemas are checked by parsing them (422 / 42201 otherwise).
* ``POST /subjects/{subject}`` looks a schema up under a subject.
* ``GET /schemas/ids/{id}`` (and ``/subjects``, ``/versions`` of an id), ``GET /subjects``,
  ``GET /subjects/{subject}/versions``, ``GET /subjects/{subject}/versions/{n|latest}``
  (and ``/schema``), ``GET /schemas/types``, ``GET /config``.
* Unknown subject / version / schema: 404 with error codes 40401 / 40402 / 40403.

What it is not: there are no compatibility checks (``/config`` says ``NONE``), no deletes,
and the schemas live in memory only (gone when it stops).  Production runs Confluent's
registry (docker-compose.yml has one).  For tests: ``basic_auth`` (user, password) makes every
request need those HTTP basic credentials (401 / 40101 otherwise); ``tls`` (a server-side
``ssl.SSLContext``) serves HTTPS, with client certificates if the context asks; ``fail_next``
makes the next requests answer with an error status, a registry that is down or overloaded.

Modules: ``store`` (the schemas, by id and by subject version) and ``server`` (the HTTP API).
"""

from connector.local_registry.server import CONTENT_TYPE, LocalSchemaRegistry

__all__ = ["CONTENT_TYPE", "LocalSchemaRegistry"]
