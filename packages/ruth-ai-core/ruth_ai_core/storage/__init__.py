"""Ruth AI Core's database: one code path over SQLite (embedded default) and PostgreSQL (production).

Modules, one job each:

- ``url``: which database (a user's URL, ``--registry PATH``, the environment), checked and mapped to psycopg 3
- ``database``: the engine per URL and its transactions (``Database.open`` checks or upgrades the schema)
- ``schema``: the tables as the code sees them; ``migrations/versions``: how they came to be (Alembic)
- ``migrate``: applying migrations (``ruth-ai db upgrade``), recognising a pre-migration SQLite registry
- ``registry_store``: models, versions, tasks, the enabled flag, the fail-closed check
- ``assignment_store``: cameras on nodes, camera -> model assignments; ``NodeAssignments`` feeds the reconciler
- ``event_sink``: result events into the database, batched, idempotent, bounded, never blocking the caller
- ``changes``: PostgreSQL LISTEN/NOTIFY on changes (SQLite polls the change revision)
- ``errors``: what can go wrong, told apart (unavailable, schema, registry answers)
- ``local_cluster``: a throwaway PostgreSQL server for tests and benchmarks

Nothing here imports Core's data path or the HTTP API.
"""

from .database import Database
from .errors import AssignmentConflict, AssignmentRejected, DatabaseUnavailable, RegistryError, SchemaError, StorageError
from .url import DatabaseUrl, DatabaseUrlError, parse_database_url, resolve_database, sqlite_url

__all__ = ["AssignmentConflict", "AssignmentRejected", "Database", "DatabaseUnavailable", "DatabaseUrl",
           "DatabaseUrlError", "RegistryError", "SchemaError", "StorageError", "parse_database_url",
           "resolve_database", "sqlite_url"]
