"""The tables as the code sees them (SQLAlchemy Core); the migrations in ``migrations/versions`` create them.

This module describes the schema at the head revision and is what every
query is built from; the migrations are frozen history and never import it.
A test checks the two agree on both backends (``tests/storage``).

Times are Unix seconds (float), as everywhere else in Ruth AI Core (an
event's ``sent_at``). JSON columns are JSONB on PostgreSQL and JSON text on
SQLite.

- ``models``: one row per model: its enabled flag and current version.
- ``model_versions``: every imported version, its metadata (the validated
  model.yaml) and where it came from.
- ``model_version_tasks``: the tasks each version declares (``supported_tasks``),
  so ``GET /v1/models?task=`` is a query, not a scan of JSON.
- ``cameras``: which node (host) runs each camera; a camera's assignments all
  run where its ring is.
- ``assignments``: camera -> model at an FPS, with its request config.
- ``change_revision``: one row, bumped by triggers on every change to the four
  tables above; on PostgreSQL the same trigger sends NOTIFY on
  ``ruth_ai_changes``. ``ruth-ai run --node`` waits on either.
- ``events``: result events, keyed by (camera, model, frame capture time,
  frame id) so a replayed batch never duplicates.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
EVENT_JSON = sa.JSON()
"""Events keep their JSON as text (``json`` on PostgreSQL): half the server CPU per insert of ``jsonb``."""
ID_LENGTH = 64
CHANGE_CHANNEL = "ruth_ai_changes"
"""PostgreSQL NOTIFY channel; the payload is the new revision."""

models = sa.Table(
    "models", metadata,
    sa.Column("model_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("current_version", sa.String(ID_LENGTH), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("model_id", sa.String(ID_LENGTH), sa.ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("metadata", JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("imported_at", sa.Float, nullable=False),
)

model_version_tasks = sa.Table(
    "model_version_tasks", metadata,
    sa.Column("model_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("version", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("task", sa.String(ID_LENGTH), primary_key=True),
    sa.ForeignKeyConstraint(["model_id", "version"], ["model_versions.model_id", "model_versions.version"],
                            ondelete="CASCADE"),
    sa.Index("ix_model_version_tasks_task", "task"),
)

cameras = sa.Table(
    "cameras", metadata,
    sa.Column("camera_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("node", sa.String(ID_LENGTH), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_cameras_node", "node"),
)

assignments = sa.Table(
    "assignments", metadata,
    sa.Column("camera_id", sa.String(ID_LENGTH), sa.ForeignKey("cameras.camera_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("model_id", sa.String(ID_LENGTH), sa.ForeignKey("models.model_id"), primary_key=True),
    sa.Column("fps", sa.Float, nullable=False),
    sa.Column("max_in_flight", sa.Integer, nullable=False),
    sa.Column("config", JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_assignments_model", "model_id"),
)

change_revision = sa.Table(
    "change_revision", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.BigInteger, nullable=False),
)

events = sa.Table(
    "events", metadata,
    sa.Column("camera_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("model_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("frame_timestamp_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("frame_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("sent_at", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("error_code", sa.String(ID_LENGTH), nullable=True),
    sa.Column("detections", EVENT_JSON, nullable=False),
    sa.Column("metadata", EVENT_JSON, nullable=False),
)
