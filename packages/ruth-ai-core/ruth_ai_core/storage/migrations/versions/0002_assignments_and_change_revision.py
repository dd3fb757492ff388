"""Assignments in the database: cameras on nodes, camera -> model assignments, tasks per version, change revision.

Adds ``model_version_tasks`` (filled here from every stored version's
``supported_tasks``), ``cameras``, ``assignments`` and the one-row
``change_revision``, with triggers that bump it on any change to models,
versions, cameras or assignments, whoever makes it (the CLI, the API, or an
operator in psql). On PostgreSQL the trigger also sends NOTIFY on
``ruth_ai_changes`` with the new revision, which ``ruth-ai run --node``
listens for; SQLite has no NOTIFY, so there the revision is polled.

Revision ID: 0002
Revises: 0001
"""

import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WATCHED = ("models", "model_versions", "cameras", "assignments", "model_version_tasks")

PG_FUNCTION = """
CREATE FUNCTION ruth_ai_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_value bigint;
BEGIN
    UPDATE change_revision SET value = value + 1 WHERE id = 1 RETURNING value INTO new_value;
    PERFORM pg_notify('ruth_ai_changes', new_value::text);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    tasks = op.create_table(
        "model_version_tasks",
        sa.Column("model_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("task", sa.String(64), primary_key=True),
        sa.ForeignKeyConstraint(["model_id", "version"], ["model_versions.model_id", "model_versions.version"],
                                ondelete="CASCADE"),
    )
    op.create_index("ix_model_version_tasks_task", "model_version_tasks", ["task"])
    op.create_table(
        "cameras",
        sa.Column("camera_id", sa.String(64), primary_key=True),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_cameras_node", "cameras", ["node"])
    op.create_table(
        "assignments",
        sa.Column("camera_id", sa.String(64), sa.ForeignKey("cameras.camera_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model_id", sa.String(64), sa.ForeignKey("models.model_id"), primary_key=True),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("max_in_flight", sa.Integer, nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_assignments_model", "assignments", ["model_id"])
    revision_table = op.create_table(
        "change_revision",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(revision_table, [{"id": 1, "value": 1}])

    # Tasks of the versions already stored (a registry migrated from v1).
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT model_id, version, metadata FROM model_versions")).all()
    filled = []
    for model_id, version, metadata in rows:
        document = json.loads(metadata) if isinstance(metadata, str) else metadata
        for task in sorted(set(document.get("supported_tasks") or [])):
            filled.append({"model_id": model_id, "version": version, "task": task})
    if filled:
        op.bulk_insert(tasks, filled)

    if bind.dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for table in WATCHED:
            op.execute(f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION ruth_ai_bump_revision()")
    else:
        for table in WATCHED:
            for action in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_{action.lower()}_changed AFTER {action} ON {table} "
                           "BEGIN UPDATE change_revision SET value = value + 1 WHERE id = 1; END")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ruth_ai_bump_revision()")
    else:
        for table in WATCHED:
            for action in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{action}_changed")
    op.drop_table("change_revision")
    op.drop_index("ix_assignments_model", "assignments")
    op.drop_table("assignments")
    op.drop_index("ix_cameras_node", "cameras")
    op.drop_table("cameras")
    op.drop_index("ix_model_version_tasks_task", "model_version_tasks")
    op.drop_table("model_version_tasks")
