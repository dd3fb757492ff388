"""The model registry: which models exist, their declarative metadata, versions, and an enabled flag.

Persistent in the Ruth AI database (``ruth_ai_core.storage``): a SQLite file
by default, PostgreSQL when a platform shares one registry between hosts and
the frontend. It can be edited by ``ruth-ai models ...`` or the admin API
while cores run: every change bumps the database's change revision (and on
PostgreSQL sends NOTIFY), and the cores reconcile. The registry is metadata
only, what may run rather than what runs: it never asks a daemon whether a model is up, and a model
being down never changes it. It fails closed: an assignment to a model it does
not know, or one that is disabled, is rejected with a message saying what to do.

Importing records a version; the latest import is the model's current
version, so importing an older version is a rollback. A model is enabled when
first imported unless told otherwise; re-importing keeps its flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from pydantic import ValidationError

from ai_model_container.contract.client import ModelClient
from ai_model_container.contract.model_config import ModelConfig, load_model_config
from ai_model_container.contract.yaml_files import validation_problems

from .storage.database import Database
from .storage.errors import AssignmentRejected, RegistryError
from .storage.registry_store import RegisteredModel, RegistryStore
from .storage.sql import revision
from .storage.url import REGISTRY_ENV, DatabaseUrl, default_sqlite_path

__all__ = ["AssignmentRejected", "ModelRegistry", "RegisteredModel", "RegistryError", "REGISTRY_ENV",
           "default_registry_path"]


def default_registry_path() -> Path:
    """$RUTH_AI_REGISTRY, else $XDG_DATA_HOME/ruth-ai/registry.sqlite3 (~/.local/share by default)."""
    return default_sqlite_path()


class ModelRegistry:
    """The registry on one database; safe to share between threads.

    ``target`` is a ``Database`` (shared, not closed here), a database URL, or
    a SQLite file path (opened, and upgraded to the current schema, here)."""

    def __init__(self, target: Database | DatabaseUrl | Path | str) -> None:
        if isinstance(target, Database):
            self.db, self._owned = target, False
        else:
            self.db, self._owned = Database.open(target), True
        self.store = RegistryStore(self.db)
        self.path: Optional[Path] = self.db.location.sqlite_path
        """The SQLite file, None on PostgreSQL."""

    @property
    def location(self) -> str:
        return self.db.location.display()

    def close(self) -> None:
        if self._owned:
            self.db.close()

    def __enter__(self) -> "ModelRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def revision(self) -> int:
        """Changes whenever the registry or the assignments change (from any process): the core's change signal."""
        return revision(self.db)

    data_version = revision
    """The name this had when it was SQLite's ``PRAGMA data_version``."""

    # -- writing ------------------------------------------------------------------------

    def add(self, config: ModelConfig, source: str, enabled: Optional[bool] = None) -> RegisteredModel:
        """Record ``config`` as the model's current version (new models start enabled unless ``enabled``)."""
        return self.store.add_version(config.model_id, config.model_version, config.model_dump(mode="json"),
                                      source, enabled)

    def import_model_yaml(self, path: Path, enabled: Optional[bool] = None) -> RegisteredModel:
        """Import from a model.yaml (raises ai_model_container's ModelConfigError if invalid)."""
        config = load_model_config(path)
        return self.add(config, f"model.yaml:{Path(path).resolve()}", enabled)

    def import_from_daemon(self, socket: Path, timeout_s: float = 5.0, enabled: Optional[bool] = None) -> RegisteredModel:
        """Import what a running daemon's describe op reports (raises ClientError if it does not answer)."""
        with ModelClient(socket, request_timeout_s=timeout_s) as client:
            described = client.describe()
        try:
            config = ModelConfig.model_validate(described.model)
        except ValidationError as exc:
            raise RegistryError(f"{socket}: describe returned metadata that is not a valid model.yaml: "
                                f"{validation_problems(exc)}") from None
        return self.add(config, f"describe:{socket}", enabled)

    def set_enabled(self, model_id: str, enabled: bool) -> RegisteredModel:
        entry = self.store.set_enabled(model_id, enabled)
        if entry is None:
            raise RegistryError(f"model {model_id!r} is not in the registry {self.location}")
        return entry

    # -- reading ------------------------------------------------------------------------

    def get(self, model_id: str) -> Optional[RegisteredModel]:
        return self.store.get(model_id)

    def list(self, enabled: Optional[bool] = None, task: Optional[str] = None) -> list[RegisteredModel]:
        return self.store.list(enabled, task)

    def check_assignable(self, model_id: str) -> RegisteredModel:
        """The registered, enabled model, or AssignmentRejected saying why not (fail closed)."""
        self.store.check_assignable(model_id)
        entry = self.store.get(model_id)
        if entry is None or not entry.enabled:  # changed between the two reads: still fail closed
            self.store.check_assignable(model_id)
            raise AssignmentRejected(f"model {model_id!r} changed while being checked; try again")
        return entry

    def rejections(self, model_ids: Iterable[str]) -> dict[str, Optional[str]]:
        """model_id -> why assignments to it are refused (None: allowed), in one query for many assignments."""
        wanted = set(model_ids)
        flags = self.store.flags(wanted)
        return {model_id: self.store.rejection(model_id, flags) for model_id in wanted}
