"""Alembic, driven from code: `katsched db upgrade` and daemon start-up both call `upgrade`."""

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from katsched.errors import StorageError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision`. Concurrent callers are serialised by the schema lock taken in env.py."""
    config = _config(engine)
    try:
        command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"migration to {revision} failed: {str(exc).splitlines()[0]}") from exc
    found = config.attributes.get("found_revision")
    reached = current_revision(engine)
    if found != reached:
        log.info("schema_upgraded from=%s to=%s", found, reached)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_config(engine)).get_current_head()
