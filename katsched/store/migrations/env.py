"""Alembic's entry point. The whole upgrade runs in one transaction that first takes the schema lock, so
daemons started together migrate one after the other: the second waits, then finds the schema current.

On PostgreSQL the lock is a transaction-level advisory lock (released by the commit or rollback, even when the
process dies); on SQLite the engine opens every write transaction with BEGIN IMMEDIATE, which takes the
database's write lock before alembic reads the current revision.
"""

from alembic import context
from sqlalchemy import Engine, text

from katsched.store.tables import metadata

# Any fixed 64-bit number: the advisory lock's name, shared by every katsched process on the database.
SCHEMA_LOCK = 0x6B617473636865

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    # Read under the lock: what this process found, so `upgrade` can say whether it was the one that migrated.
    context.config.attributes["found_revision"] = context.get_context().get_current_revision()
    with context.begin_transaction():
        context.run_migrations()
