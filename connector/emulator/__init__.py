"""A local, SQLite-backed emulator of the Amberflo API (``amberflo-connector emulator``).

Modules:

* ``ingest``     – decoding and validating ``/ingest`` bodies into storable rows (pure).
* ``usage``      – the usage report engine (pure functions over stored rows).
* ``store``      – SQLite persistence: the meter records and the S3 intake's objects;
  ``documents``: customers, plans, meters, filtering rules.
* ``middleware`` – trailing-slash normalisation, API-key auth, fault injection, status counts.
* ``server``     – the FastAPI application and ``serve()``.
"""
