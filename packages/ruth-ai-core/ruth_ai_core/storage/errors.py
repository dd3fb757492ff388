"""What can go wrong in storage, as exceptions the CLI, the API and the reconciler tell apart.

``DatabaseUnavailable`` is transient (the server is down or unreachable: keep
what runs, retry later); ``SchemaError`` needs an operator (run ``ruth-ai db
upgrade``, or use the newer Ruth AI Core that wrote the database); the
registry errors are answers about the data (unknown or disabled model: fail
closed).
"""

from __future__ import annotations


class StorageError(Exception):
    """Storage cannot do what was asked; the message says why and, where it can, what to do."""


class DatabaseUnavailable(StorageError):
    """The database does not answer (down, unreachable, refused); worth retrying."""


class SchemaError(StorageError):
    """The database's schema is not the one this Ruth AI Core uses (not upgraded, newer, or not ours)."""


class RegistryError(StorageError):
    """The registry cannot do what was asked; the message says why."""


class AssignmentRejected(RegistryError):
    """An assignment names a model the registry does not allow (unknown or disabled): fail closed."""


class AssignmentConflict(StorageError):
    """An assignment that contradicts another (a camera already placed on a different node)."""


class InvalidDocument(StorageError, ValueError):
    """A JSON document (model metadata, an assignment's config) that cannot be stored as it is on every backend:
    NUL characters or unpaired surrogates in its strings (PostgreSQL's text and JSONB refuse both)."""
