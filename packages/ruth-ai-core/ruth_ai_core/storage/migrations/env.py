"""Alembic environment: migrations run on the connection ``ruth_ai_core.storage.migrate`` hands over.

No alembic.ini and no logging setup: ``ruth-ai db upgrade`` (and opening a
SQLite file) drive Alembic programmatically, inside one transaction that the
caller opened and commits, so an upgrade is all-or-nothing on both backends.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True, version_table=context.config.attributes["version_table"],
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
