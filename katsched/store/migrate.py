"""Alembic, driven from code: `katsched db upgrade` and daemon start-up both call `upgrade`.

Reading the revisions (`current_revision`, `head_revision`) does not import Alembic: the read-only commands
check the schema on every start, and Alembic alone takes longer to import than they may take to answer.
"""

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from katsched.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_REVISION = re.compile(r'^revision(?:: str)? = "(\w+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision(?:: [\w| ]+)? = "(\w+)"$', re.MULTILINE)


def _config(engine: Engine) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision`. Concurrent callers are serialised by the schema lock taken in env.py."""
    from alembic import command

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
    """The revision the database is at; None for a database without katsched's schema."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def revisions() -> tuple[set[str], str]:
    """(every revision of the migration scripts, the newest): the newest is the one no script names as its
    predecessor."""
    known, predecessors = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        known.update(_REVISION.findall(source))
        predecessors.update(_DOWN_REVISION.findall(source))
    heads = known - predecessors
    if len(heads) != 1:
        raise StorageError(f"the migration scripts have {len(heads)} heads, not one: {sorted(heads)}")
    return known, heads.pop()


def head_revision() -> str:
    return revisions()[1]
