"""The registry's schemas, in memory: by id (the same schema gets the same id under every
subject) and by subject version (a subject gets a new version only for a new schema).  Avro
schemas are checked by parsing them, with their references."""

from __future__ import annotations

import json
import threading
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException

SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")


class RegistryError(Exception):
    """An error answer: HTTP status, Schema Registry error code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SchemaStore:
    """Schemas by id and by subject version, in memory.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}  # canonical (type, schema, references) → id
        self._schemas: dict[int, dict[str, Any]] = {}  # id → {schema, schemaType, references}
        self._subjects: dict[str, list[int]] = {}  # subject → schema id of each version

    def register(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(body)
        key = _canonical(entry)
        with self._lock:
            schema_id = self._ids.get(key)
            if schema_id is None:
                schema_id = self._ids[key] = len(self._schemas) + 1
                self._schemas[schema_id] = entry
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            version = versions.index(schema_id) + 1
        return _registered(subject, version, schema_id, entry)

    def lookup(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        entry = self._entry(body)
        with self._lock:
            versions = self._subject(subject)
            schema_id = self._ids.get(_canonical(entry))
            if schema_id not in versions:
                raise RegistryError(404, 40403, "Schema not found")
            return _registered(subject, versions.index(schema_id) + 1, schema_id, entry)

    def schema(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            entry = self._schemas.get(schema_id)
        if entry is None:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return _public(entry)

    def subjects_of(self, schema_id: int) -> list[dict[str, Any]]:
        self.schema(schema_id)
        with self._lock:
            return [
                {"subject": s, "version": v.index(schema_id) + 1}
                for s, v in sorted(self._subjects.items())
                if schema_id in v
            ]

    def subjects(self) -> list[str]:
        with self._lock:
            return sorted(self._subjects)

    def versions(self, subject: str) -> list[int]:
        with self._lock:
            return list(range(1, len(self._subject(subject)) + 1))

    def version(self, subject: str, version: str) -> dict[str, Any]:
        with self._lock:
            versions = self._subject(subject)
            if version in ("latest", "-1"):
                n = len(versions)
            elif version.isdigit() and 1 <= int(version) <= len(versions):
                n = int(version)
            else:
                raise RegistryError(404, 40402, f"Version {version} not found.")
            schema_id = versions[n - 1]
            return _registered(subject, n, schema_id, self._schemas[schema_id])

    def _subject(self, subject: str) -> list[int]:
        versions = self._subjects.get(subject)
        if not versions:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return versions

    def _entry(self, body: dict[str, Any]) -> dict[str, Any]:
        """A registration request's schema, checked: Avro must parse (with its references)."""
        text = body.get("schema")
        kind = body.get("schemaType") or "AVRO"
        refs = body.get("references") or []
        if not isinstance(text, str) or kind not in SCHEMA_TYPES or not isinstance(refs, list):
            raise RegistryError(422, 42201, "Invalid schema: 'schema' must be a string")
        references = [
            {"name": r["name"], "subject": r["subject"], "version": int(r["version"])}
            for r in refs
            if isinstance(r, dict)
        ]
        if kind == "AVRO":
            try:
                named: dict[str, Any] = {}
                for ref in references:
                    self._parse_reference(ref, named)
                fastavro.parse_schema(json.loads(text), named_schemas=named)
            except (ValueError, TypeError, KeyError, RegistryError, SchemaParseException) as exc:
                raise RegistryError(422, 42201, f"Invalid schema: {exc}") from exc
        return {"schema": text, "schemaType": kind, "references": references}

    def _parse_reference(self, ref: dict[str, Any], named: dict[str, Any]) -> None:
        with self._lock:
            versions = self._subject(ref["subject"])
            entry = self._schemas[versions[ref["version"] - 1]]
        for inner in entry["references"]:
            self._parse_reference(inner, named)
        fastavro.parse_schema(json.loads(entry["schema"]), named_schemas=named)


def _canonical(entry: dict[str, Any]) -> str:
    text = entry["schema"]
    if entry["schemaType"] in ("AVRO", "JSON"):
        text = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    return json.dumps([entry["schemaType"], text, entry["references"]], sort_keys=True)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    """As Confluent answers: ``schemaType`` only when not Avro, ``references`` when any."""
    out: dict[str, Any] = {"schema": entry["schema"]}
    if entry["schemaType"] != "AVRO":
        out["schemaType"] = entry["schemaType"]
    if entry["references"]:
        out["references"] = entry["references"]
    return out


def _registered(
    subject: str, version: int, schema_id: int, entry: dict[str, Any]
) -> dict[str, Any]:
    return {"subject": subject, "version": version, "id": schema_id, **_public(entry)}
