"""The model registry: which models exist, their declarative metadata, versions, and an enabled flag.

Persistent in SQLite (stdlib ``sqlite3``), so it survives restarts and can be
edited by ``ruth-ai models ...`` while the core runs: the core notices commits
through ``PRAGMA data_version`` and reconciles. The registry is metadata only,
what may run rather than what runs: it never asks a daemon whether a model is
up, and a model being down never changes it. It fails closed: an assignment to a model it does not
know, or one that is disabled, is rejected with a message saying what to do.

Importing records a version; the latest import is the model's current
version, so importing an older version is a rollback. A model is enabled when
first imported unless told otherwise; re-importing keeps its flag.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ai_model_container.contract.client import ModelClient
from ai_model_container.contract.model_config import ModelConfig, load_model_config

REGISTRY_ENV = "RUTH_AI_REGISTRY"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    current_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    model_id TEXT NOT NULL REFERENCES models(model_id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    metadata TEXT NOT NULL,
    source TEXT NOT NULL,
    imported_at REAL NOT NULL,
    PRIMARY KEY (model_id, version)
);
"""


class RegistryError(Exception):
    """The registry cannot do what was asked; the message says why."""


class AssignmentRejected(RegistryError):
    """An assignment names a model the registry does not allow."""


def default_registry_path() -> Path:
    """$RUTH_AI_REGISTRY, else $XDG_DATA_HOME/ruth-ai/registry.sqlite3 (~/.local/share by default)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "ruth-ai" / "registry.sqlite3"


@dataclass(frozen=True)
class RegisteredModel:
    model_id: str
    enabled: bool
    current_version: str
    versions: list[str]
    metadata: dict[str, Any]
    """The current version's model.yaml, as validated."""
    source: str
    """Where the current version was imported from."""
    updated_at: float

    @property
    def name(self) -> str:
        return str(self.metadata.get("model_name", ""))


class ModelRegistry:
    """One SQLite database; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.Lock()
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise RegistryError(f"{self.path}: registry schema version {version} is newer than this Ruth AI Core ({SCHEMA_VERSION})")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "ModelRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits: the core's change signal."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- writing ------------------------------------------------------------------------

    def add(self, config: ModelConfig, source: str, enabled: Optional[bool] = None) -> RegisteredModel:
        """Record ``config`` as the model's current version (new models start enabled unless ``enabled``)."""
        now = time.time()
        metadata = json.dumps(config.model_dump(mode="json"), sort_keys=True)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT enabled FROM models WHERE model_id = ?", (config.model_id,)).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO models (model_id, enabled, current_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                        (config.model_id, int(True if enabled is None else enabled), config.model_version, now, now),
                    )
                else:
                    self._db.execute(
                        "UPDATE models SET current_version = ?, enabled = ?, updated_at = ? WHERE model_id = ?",
                        (config.model_version, int(bool(row[0]) if enabled is None else enabled), now, config.model_id),
                    )
                self._db.execute(
                    "INSERT INTO model_versions (model_id, version, metadata, source, imported_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (model_id, version) DO UPDATE SET metadata = excluded.metadata, "
                    "source = excluded.source, imported_at = excluded.imported_at",
                    (config.model_id, config.model_version, metadata, source, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        entry = self.get(config.model_id)
        assert entry is not None
        return entry

    def import_model_yaml(self, path: Path, enabled: Optional[bool] = None) -> RegisteredModel:
        """Import from a model.yaml (raises ai_model_container's ModelConfigError if invalid)."""
        config = load_model_config(path)
        return self.add(config, f"model.yaml:{path.resolve()}", enabled)

    def import_from_daemon(self, socket: Path, timeout_s: float = 5.0, enabled: Optional[bool] = None) -> RegisteredModel:
        """Import what a running daemon's describe op reports (raises ClientError if it does not answer)."""
        with ModelClient(socket, request_timeout_s=timeout_s) as client:
            described = client.describe()
        try:
            config = ModelConfig.model_validate(described.model)
        except ValueError as exc:
            raise RegistryError(f"{socket}: describe returned metadata that is not a valid model.yaml: {exc}") from None
        return self.add(config, f"describe:{socket}", enabled)

    def set_enabled(self, model_id: str, enabled: bool) -> RegisteredModel:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE models SET enabled = ?, updated_at = ? WHERE model_id = ?", (int(enabled), time.time(), model_id)
            )
        if cursor.rowcount == 0:
            raise RegistryError(f"model {model_id!r} is not in the registry {self.path}")
        entry = self.get(model_id)
        assert entry is not None
        return entry

    # -- reading ------------------------------------------------------------------------

    def get(self, model_id: str) -> Optional[RegisteredModel]:
        with self._lock:
            row = self._db.execute(
                "SELECT m.model_id, m.enabled, m.current_version, m.updated_at, v.metadata, v.source "
                "FROM models m JOIN model_versions v ON v.model_id = m.model_id AND v.version = m.current_version "
                "WHERE m.model_id = ?", (model_id,),
            ).fetchone()
            if row is None:
                return None
            versions = [v for (v,) in self._db.execute(
                "SELECT version FROM model_versions WHERE model_id = ? ORDER BY imported_at", (model_id,))]
        return RegisteredModel(model_id=row[0], enabled=bool(row[1]), current_version=row[2], versions=versions,
                               metadata=json.loads(row[4]), source=row[5], updated_at=row[3])

    def list(self) -> list[RegisteredModel]:
        with self._lock:
            ids = [model_id for (model_id,) in self._db.execute("SELECT model_id FROM models ORDER BY model_id")]
        return [entry for entry in (self.get(model_id) for model_id in ids) if entry is not None]

    def check_assignable(self, model_id: str) -> RegisteredModel:
        """The registered, enabled model, or AssignmentRejected saying why not (fail closed)."""
        entry = self.get(model_id)
        if entry is None:
            raise AssignmentRejected(
                f"model {model_id!r} is not in the registry {self.path}; "
                f"import it first: ruth-ai models import MODEL_YAML (or --from-daemon {model_id})"
            )
        if not entry.enabled:
            raise AssignmentRejected(f"model {model_id!r} is disabled in the registry; enable it with: ruth-ai models enable {model_id}")
        return entry
